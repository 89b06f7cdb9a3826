"""The reader interface every backend implements: frames by index, not a stream."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import torch

from mlfo.errors import VideoDecodeError


class VideoReader(ABC):
    """Random access to the frames of one video.

    Subclasses set ``path``, ``num_frames``, ``fps``, ``height`` and ``width`` when opened
    (``num_frames`` is the number of frames ``get_frames`` can return, counted from the
    file, never a container's estimate) and implement ``_read(sorted unique indices)``.
    """

    path: str
    num_frames: int
    fps: float
    height: int
    width: int

    def get_frames(self, indices: Sequence[int], size: tuple[int, int] | None = None) -> torch.Tensor:
        """Frames at ``indices`` as uint8 (T, H, W, 3) RGB, in the order asked, repeats allowed.

        ``size`` = (height, width) returns them scaled to that size by the backend's own
        scaler (swscale for video files), cheaper than scaling afterwards; None: as stored.
        """
        wanted = [int(i) for i in indices]
        height, width = size or (self.height, self.width)
        if not wanted:
            return torch.empty((0, height, width, 3), dtype=torch.uint8)
        bad = [i for i in wanted if not 0 <= i < self.num_frames]
        if bad:
            raise VideoDecodeError(
                f"{self.path}: frame index {bad[0]} out of range (video has {self.num_frames} frames)"
            )
        unique = sorted(set(wanted))
        frames = self._read(unique, size)  # {index: (H, W, 3) uint8}
        if frames[unique[0]].device.type != "cpu":  # decoded on a GPU
            return torch.stack([frames[i] for i in wanted])
        # numpy, not torch.stack: torch's multi-threaded copy crawls on busy shared cores.
        return torch.from_numpy(np.stack([frames[i].numpy() for i in wanted]))

    @abstractmethod
    def _read(self, indices: list[int], size: tuple[int, int] | None = None) -> dict[int, torch.Tensor]:
        """Decode the frames at sorted, unique, in-range ``indices`` (at ``size`` when given)."""

    def verify(self, thorough: bool = False) -> None:
        """Decode what shows whether the file is damaged (what a scan checks; by default the
        first and last frames; ``thorough``: every frame); raises ``VideoDecodeError``
        naming the file if it is."""
        if thorough:
            for start in range(0, self.num_frames, 64):  # in chunks: bounded memory
                self.get_frames(range(start, min(start + 64, self.num_frames)))
        else:
            self.get_frames(sorted({0, self.num_frames - 1}))

    def close(self) -> None:
        """Release the file handles (idempotent)."""

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __len__(self) -> int:
        return self.num_frames

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.path!r}, num_frames={self.num_frames}, "
            f"fps={self.fps:.3g}, size={self.width}x{self.height})"
        )
