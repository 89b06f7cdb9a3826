"""User-facing errors.

Anything a user can cause (a bad path, a malformed CSV row, an unknown config key) is
raised as ``MLFOError`` with a one-line message naming the file or key and the problem;
the CLI prints it without a stack trace.
"""

import os
from pathlib import Path


class MLFOError(Exception):
    """An error caused by input or configuration, printed to the user as one line."""


class VideoDecodeError(MLFOError):
    """A video file that cannot be opened or decoded (missing, not a video, truncated)."""


def make_folder(path, role: str, writable: bool = False) -> None:
    """Create ``path`` (and its parents) for a command's output: a file in the way, a
    permission or a full disk is one line naming ``path`` and its ``role``."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise MLFOError(f"{path}: the {role} exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise MLFOError(f"{path}: cannot create the {role} ({err.strerror or err})") from None
    if writable and not os.access(path, os.W_OK | os.X_OK):
        raise MLFOError(f"{path}: the {role} is not writable")
