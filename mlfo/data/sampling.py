"""Which frames of a video become clips.

Pretraining (method.md §1): one random frame rate r and start s per video give 2T frame
indices ``s + r*k``; clip A is the first half, clip B the second half (consecutive, the
positives), clip G every second index of the whole span (an overview of A and B at half
the rate, the target of timestamp matching).

Evaluation: a fixed number of uniformly spread clips per video, or every window at a
given stride (dense retrieval / sliding-window testing).
"""

from __future__ import annotations

import math

import numpy as np

from mlfo.errors import MLFOError, VideoDecodeError


def mlfo_min_frames(clip_len: int) -> int:
    """THE minimum-frames rule: a pretraining video needs MORE than this many frames, the
    three-clip span 2T (A and B consecutive, G over both). Training, the dataset, the
    sampler and ``mlfo data scan`` all ask here."""
    return 2 * clip_len


def sample_mlfo_span(
    num_frames: int, clip_len: int, r_max: float, rng: np.random.Generator
) -> tuple[list[int], float]:
    """The 2T frame indices of one MLFO sample and the rate they were drawn at.

    r ~ U[1, min(r_max, F / 2T)] (real-valued), start s uniform over the integer starts
    that keep ``s + r * (2T - 1)`` inside the video, indices rounded and clamped to F-1.
    """
    span = mlfo_min_frames(clip_len)  # 2T indices
    if clip_len < 1:
        raise MLFOError(f"clip_len: must be at least 1, got {clip_len}")
    if r_max < 1:
        raise MLFOError(f"r_max: must be at least 1, got {r_max}")
    if num_frames <= span:
        raise VideoDecodeError(
            f"video too short: {num_frames} frames, the three-clip sampler needs more than "
            f"2 x clip_len = {span}"
        )
    rate = float(rng.uniform(1.0, min(float(r_max), num_frames / span)))
    max_start = max(0, math.floor(num_frames - 1 - rate * (span - 1)))
    start = int(rng.integers(0, max_start + 1))
    steps = np.arange(span, dtype=np.float64)
    indices = np.minimum(np.rint(start + rate * steps).astype(np.int64), num_frames - 1)
    return indices.tolist(), rate


def sample_mlfo_indices(
    num_frames: int, clip_len: int, r_max: float, rng: np.random.Generator
) -> tuple[list[int], list[int], list[int]]:
    """Frame indices of clips A, B and G (each ``clip_len`` long) for one video.

    Raises ``MLFOError`` when the video has at most ``mlfo_min_frames(clip_len)`` frames.
    """
    indices, _ = sample_mlfo_span(num_frames, clip_len, r_max, rng)
    return indices[:clip_len], indices[clip_len:], indices[::2]


def _clip_extent(clip_len: int, frame_step: int) -> int:
    if clip_len < 1 or frame_step < 1:
        raise MLFOError(f"clip_len/frame_step: must be at least 1, got {clip_len}/{frame_step}")
    return (clip_len - 1) * frame_step + 1


def clip_indices(start: int, clip_len: int, num_frames: int, frame_step: int = 1) -> list[int]:
    """``clip_len`` indices from ``start`` every ``frame_step`` frames, clamped to the last frame
    (short videos repeat their last frame rather than being dropped at evaluation)."""
    return [min(start + k * frame_step, num_frames - 1) for k in range(clip_len)]


def uniform_clip_starts(num_frames: int, clip_len: int, num_clips: int, frame_step: int = 1) -> list[int]:
    """Starts of ``num_clips`` clips spread evenly from the first to the last possible start.

    A video shorter than one clip gives ``num_clips`` starts at 0 (frames get clamped).
    """
    if num_clips < 1:
        raise MLFOError(f"num_clips: must be at least 1, got {num_clips}")
    last_start = max(0, num_frames - _clip_extent(clip_len, frame_step))
    if num_clips == 1:
        return [last_start // 2]
    return np.rint(np.linspace(0, last_start, num_clips)).astype(int).tolist()


def sliding_window_starts(num_frames: int, clip_len: int, stride: int, frame_step: int = 1) -> list[int]:
    """Starts of every window ``stride`` frames apart that fits inside the video (at least one)."""
    if stride < 1:
        raise MLFOError(f"stride: must be at least 1, got {stride}")
    last_start = max(0, num_frames - _clip_extent(clip_len, frame_step))
    return list(range(0, last_start + 1, stride))


def uniform_clip_indices(num_frames: int, clip_len: int, num_clips: int, frame_step: int = 1) -> list[list[int]]:
    """Frame indices of each uniformly spread evaluation clip."""
    starts = uniform_clip_starts(num_frames, clip_len, num_clips, frame_step)
    return [clip_indices(s, clip_len, num_frames, frame_step) for s in starts]


def sliding_window_indices(num_frames: int, clip_len: int, stride: int, frame_step: int = 1) -> list[list[int]]:
    """Frame indices of each sliding evaluation window."""
    starts = sliding_window_starts(num_frames, clip_len, stride, frame_step)
    return [clip_indices(s, clip_len, num_frames, frame_step) for s in starts]
