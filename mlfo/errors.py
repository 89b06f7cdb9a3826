"""User-facing errors.

Anything a user can cause (a bad path, a malformed CSV row, an unknown config key) is
raised as ``MLFOError`` with a one-line message naming the file or key and the problem;
the CLI prints it without a stack trace.
"""


class MLFOError(Exception):
    """An error caused by input or configuration, printed to the user as one line."""


class VideoDecodeError(MLFOError):
    """A video file that cannot be opened or decoded (missing, not a video, truncated)."""
