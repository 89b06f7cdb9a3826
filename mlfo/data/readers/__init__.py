"""One interface for reading frames from a video, whatever stores it.

Training samples a few frames at scattered indices from each video, so the interface is
"give me these frame indices" rather than a stream: backends are free to seek, decode
forward or read image files, as long as frame ``i`` is always the same picture.

    with open_video("clip.mp4") as reader:
        frames = reader.get_frames([0, 8, 16])   # uint8 (3, H, W, 3), RGB

Backends: ``"pyav"`` (video files, default), ``"frames"`` (folders of image files),
``"torchcodec"`` (optional, when torchcodec imports; ``device="cuda"`` decodes on the
GPU). ``"auto"`` picks ``"frames"`` for a directory and ``"pyav"`` otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

from mlfo.data.readers.base import VideoReader
from mlfo.errors import MLFOError

BACKENDS = ("auto", "pyav", "frames", "torchcodec")

__all__ = ["BACKENDS", "VideoReader", "open_video", "resolve_backend"]


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
    device = kwargs.pop("device", "cpu")  # torchcodec only: "cuda" decodes on the GPU
    if str(device) != "cpu" and name != "torchcodec":
        raise MLFOError(f"backend: decoding on {device} needs backend 'torchcodec', not {name!r}")
    if name == "frames":
        from mlfo.data.readers.frames import FrameFolderReader

        return FrameFolderReader(path, **kwargs)
    from mlfo.data.readers.pyav import PyAVReader

    if name == "pyav":
        return PyAVReader(path, **kwargs)
    from mlfo.data.readers.torchcodec import TorchCodecReader, require_torchcodec

    require_torchcodec()
    # torchcodec decodes only where it is known to be exact; PyAV's timestamp index
    # (one demux pass) decides, and reads the file itself where torchcodec would not.
    return TorchCodecReader(PyAVReader(path, **kwargs), threads=kwargs.get("threads", 1), device=device)
