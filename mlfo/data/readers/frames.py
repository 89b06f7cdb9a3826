"""Videos stored as folders of image files, one per frame.

This is the layout of the common UCF101/HMDB51/Kinetics frame dumps and of the MLFO
reference implementation: ``image_00001.jpg``, ``img_00001.jpg``, ``frame000001.png``
and similar. Frames are ordered by the number in their file name (natural sort), so
``frame_2.jpg`` comes before ``frame_10.jpg`` whatever the zero padding.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from mlfo.data.readers.base import VideoReader
from mlfo.errors import VideoDecodeError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

# Frame dumps carry no frame rate; UCF101 and HMDB51 were recorded at 25 / 30 fps.
DEFAULT_FPS = 25.0


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def list_frame_files(folder: str | os.PathLike) -> list[Path]:
    """Image files directly inside ``folder``, in frame order (hidden files skipped)."""
    folder = Path(folder)
    names = [
        entry.name
        for entry in os.scandir(folder)
        if entry.is_file() and not entry.name.startswith(".")
        and entry.name.lower().endswith(IMAGE_SUFFIXES)
    ]
    return [folder / name for name in sorted(names, key=_natural_key)]


def is_frame_folder(path: str | os.PathLike) -> bool:
    """True for a directory that directly holds at least one image file."""
    path = Path(path)
    if not path.is_dir():
        return False
    with os.scandir(path) as entries:
        return any(e.is_file() and e.name.lower().endswith(IMAGE_SUFFIXES) for e in entries)


class FrameFolderReader(VideoReader):
    """Reads frame ``i`` from the ``i``-th image file (natural order).

    ``fps`` cannot be known from the images: it is ``fps`` as given (default
    ``DEFAULT_FPS`` = 25). Height and width come from the first image; frames of another
    size are resized to it so that a clip always stacks.
    """

    def __init__(self, path: str | os.PathLike, fps: float = DEFAULT_FPS):
        self.path = str(path)
        folder = Path(path)
        if not folder.exists():
            raise VideoDecodeError(f"{self.path}: folder not found")
        if not folder.is_dir():
            raise VideoDecodeError(f"{self.path}: not a folder of frames")
        self._files = list_frame_files(folder)
        self.num_frames = len(self._files)
        if self.num_frames == 0:
            raise VideoDecodeError(f"{self.path}: no image files ({', '.join(IMAGE_SUFFIXES)}) in folder")
        self.fps = float(fps)
        first = self._load(0)
        self.height, self.width = first.shape[:2]

    def _load(self, index: int, size: tuple[int, int] | None = None) -> np.ndarray:
        file = self._files[index]
        try:
            with Image.open(file) as image:
                image = image.convert("RGB")
                height, width = size or (getattr(self, "height", image.height), getattr(self, "width", image.width))
                if image.size != (width, height):
                    image = image.resize((width, height), Image.BILINEAR)
                return np.array(image, dtype=np.uint8)
        except (OSError, UnidentifiedImageError, ValueError) as err:
            raise VideoDecodeError(f"{file}: cannot read frame image ({str(err).splitlines()[0]})") from None

    def _read(self, indices: list[int], size: tuple[int, int] | None = None) -> dict[int, torch.Tensor]:
        return {i: torch.from_numpy(self._load(i, size)) for i in indices}
