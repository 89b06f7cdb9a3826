"""One interface for reading frames from a video, whatever stores it.

Training samples a few frames at scattered indices from each video, so the interface is
"give me these frame indices" rather than a stream: backends are free to seek, decode
forward or read image files, as long as frame ``i`` is always the same picture.

    with open_video("clip.mp4") as reader:
        frames = reader.get_frames([0, 8, 16])   # uint8 (3, H, W, 3), RGB

Backends: ``"pyav"`` (video files, default), ``"frames"`` (folders of image files),
``"torchcodec"`` (optional, when torchcodec imports). ``"auto"`` picks ``"frames"`` for
a directory and ``"pyav"`` otherwise.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mlfo.errors import MLFOError, VideoDecodeError

BACKENDS = ("auto", "pyav", "frames", "torchcodec")


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

    def get_frames(self, indices: Sequence[int]) -> torch.Tensor:
        """Frames at ``indices`` as uint8 (T, H, W, 3) RGB, in the order asked, repeats allowed."""
        wanted = [int(i) for i in indices]
        if not wanted:
            return torch.empty((0, self.height, self.width, 3), dtype=torch.uint8)
        bad = [i for i in wanted if not 0 <= i < self.num_frames]
        if bad:
            raise VideoDecodeError(
                f"{self.path}: frame index {bad[0]} out of range (video has {self.num_frames} frames)"
            )
        unique = sorted(set(wanted))
        frames = self._read(unique)  # {index: (H, W, 3) uint8}
        # numpy, not torch.stack: torch's multi-threaded copy crawls on busy shared cores.
        return torch.from_numpy(np.stack([frames[i].numpy() for i in wanted]))

    @abstractmethod
    def _read(self, indices: list[int]) -> dict[int, torch.Tensor]:
        """Decode the frames at sorted, unique, in-range ``indices``."""

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


def resolve_backend(path: str | os.PathLike, backend: str = "auto") -> str:
    """The concrete backend name ``open_video`` would use for ``path``."""
    if backend not in BACKENDS:
        raise MLFOError(f"backend: unknown video backend {backend!r} (choose from {', '.join(BACKENDS)})")
    if backend == "auto":
        return "frames" if Path(path).is_dir() else "pyav"
    return backend


def open_video(path: str | os.PathLike, backend: str = "auto", **kwargs) -> VideoReader:
    """Open ``path`` (a video file or a folder of frames) for random frame access.

    Raises ``VideoDecodeError`` (one line naming the file) when the file is missing, is
    not a video, has no frames or cannot be indexed.
    """
    name = resolve_backend(path, backend)
    if name == "pyav":
        from mlfo.data.pyav_reader import PyAVReader

        return PyAVReader(path, **kwargs)
    if name == "frames":
        from mlfo.data.frame_folder import FrameFolderReader

        return FrameFolderReader(path, **kwargs)
    from mlfo.data.torchcodec_reader import TorchCodecReader

    return TorchCodecReader(path, **kwargs)
