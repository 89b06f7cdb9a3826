"""Placeholder during development; replaced by the real command module."""


def register(subparsers) -> None:
    return None
