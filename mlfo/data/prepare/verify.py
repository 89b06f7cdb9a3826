"""Checking a prepared file before it takes its final name: the frame count equals the
plan's, and every frame read back through mlfo's reader (in order, and by seeking) is the
frame that was encoded at that index, not a neighbour."""

from __future__ import annotations

import numpy as np

from mlfo.data.prepare.encode import CHUNK, thumbnails
from mlfo.data.readers import open_video
from mlfo.errors import VideoDecodeError

MAX_ERROR = 20.0  # mean absolute grey-level error of a frame: coding noise stays far below
# A frame is a neighbour's picture when it is much nearer to that neighbour than to its own
# (nearer by this factor and by a grey level at least); on still scenes the two are equal.
NEARER, MIN_GAP = 0.6, 1.0


def _error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.float32) - b.astype(np.float32)).mean(axis=(-2, -1))


def frame_errors(decoded: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """(F, 3) mean absolute thumbnail error of decoded frame j against expected j-1, j, j+1
    (inf where the neighbour does not exist)."""
    errors = np.full((len(decoded), 3), np.inf, np.float32)
    for col, shift in enumerate((-1, 0, 1)):
        idx = np.arange(len(decoded)) + shift
        ok = (idx >= 0) & (idx < len(expected))
        errors[ok, col] = _error(decoded[ok], expected[idx[ok]])
    return errors


def _wrong(errors: np.ndarray) -> np.ndarray:
    """Per row of (own, nearest neighbour) errors: far from its own picture, or a neighbour's."""
    own, other = errors[:, 0], errors[:, 1]
    return (own > MAX_ERROR) | ((other < NEARER * own) & (other + MIN_GAP < own))


def first_wrong_frame(decoded: np.ndarray, expected: np.ndarray) -> int | None:
    """Index of the first decoded frame that is not its expected frame, else None. A frame
    is wrong when far from its own picture or clearly nearer to a neighbour (a shift)."""
    errors = frame_errors(decoded, expected)
    bad = np.flatnonzero(_wrong(np.stack([errors[:, 1], np.minimum(errors[:, 0], errors[:, 2])], 1)))
    return int(bad[0]) if len(bad) else None


def verify_output(path: str, expected: np.ndarray, backend: str = "pyav") -> None:
    """Raise ``VideoDecodeError`` unless ``path`` holds exactly the frames whose
    thumbnails are ``expected`` (F, h, w), read in order and by random access. A shift shows
    where neighbouring frames differ by more than coding noise (moving content); on still
    content an off-by-one frame is the same picture, and the frame count still must match."""
    with open_video(path, backend) as reader:
        if reader.num_frames != len(expected):
            raise VideoDecodeError(f"{path}: wrote {len(expected)} frames, reads back {reader.num_frames}")
        decoded = np.concatenate([
            thumbnails(reader.get_frames(range(s, min(s + CHUNK, reader.num_frames))).numpy())
            for s in range(0, reader.num_frames, CHUNK)])
    wrong = first_wrong_frame(decoded, expected)
    if wrong is not None:
        raise VideoDecodeError(f"{path}: frame {wrong} reads back as another picture")
    count = len(expected)
    probes = sorted({count - 1, count // 2, count // 3, 1 % count})[::-1]  # backwards: seeks
    with open_video(path, backend) as reader:
        for i in probes:
            got = thumbnails(reader.get_frames([i]).numpy())[0]
            others = [float(_error(got, expected[j])) for j in (i - 1, i + 1) if 0 <= j < count]
            row = np.array([[float(_error(got, expected[i])), min(others, default=np.inf)]], np.float32)
            if _wrong(row)[0]:
                raise VideoDecodeError(f"{path}: frame {i} read by seeking is another picture")
