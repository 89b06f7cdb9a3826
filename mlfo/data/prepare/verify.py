"""Checking a prepared file before it takes its final name: the frame count equals the
plan's, and every frame read back through mlfo's reader (in order, and by seeking) is the
frame that was encoded at that index, not a neighbour."""

from __future__ import annotations

import numpy as np

from mlfo.data.prepare.encode import CHUNK, thumbnails
from mlfo.data.readers import open_video
from mlfo.errors import VideoDecodeError

MAX_ERROR = 12.0  # grey levels, mean over 8x8 block means: coding noise stays far below


def frame_errors(decoded: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """(F, 3) mean absolute thumbnail error of decoded frame j against expected j-1, j, j+1
    (inf where the neighbour does not exist)."""
    errors = np.full((len(decoded), 3), np.inf, np.float32)
    for col, shift in enumerate((-1, 0, 1)):
        idx = np.arange(len(decoded)) + shift
        ok = (idx >= 0) & (idx < len(expected))
        errors[ok, col] = np.abs(decoded[ok] - expected[idx[ok]]).mean(axis=(1, 2))
    return errors


def first_wrong_frame(decoded: np.ndarray, expected: np.ndarray) -> int | None:
    """Index of the first decoded frame that is not its expected frame, else None. A frame
    is wrong when far from its own picture or clearly nearer to a neighbour (a shift)."""
    errors = frame_errors(decoded, expected)
    own = errors[:, 1]
    shifted = np.minimum(errors[:, 0], errors[:, 2]) + 0.5 < own
    bad = np.flatnonzero((own > MAX_ERROR) | shifted)
    return int(bad[0]) if len(bad) else None


def verify_output(path: str, expected: np.ndarray, backend: str = "pyav") -> None:
    """Raise ``VideoDecodeError`` unless ``path`` holds exactly the frames whose
    thumbnails are ``expected`` (F, 8, 8), read in order and by random access."""
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
            errors = [np.abs(got - expected[j]).mean() for j in (i - 1, i + 1) if 0 <= j < count]
            own = np.abs(got - expected[i]).mean()
            if own > MAX_ERROR or (errors and min(errors) + 0.5 < own):
                raise VideoDecodeError(f"{path}: frame {i} read by seeking is another picture")
