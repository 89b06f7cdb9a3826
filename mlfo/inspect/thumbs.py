"""Small looping thumbnails of the very views a video's feature came from: the same
``ViewConfig`` dataset, un-normalised, every view in order (clip-major), as animated WebP.

WebP, not GIF: on the demo videos (64 px, 32 frames) a WebP took 0.021 s of CPU and 9 KB,
a GIF 0.154 s and 100 KB (Pillow 12, measured on this project's 2-core machine); every
browser shows both."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mlfo.data.loading import build_loader
from mlfo.eval.views import ViewConfig

FRAME_MS = 80  # 12.5 frames a second
QUALITY = 60  # lossy WebP: a thumbnail, not a record


def to_frames(views: torch.Tensor, max_frames: int) -> np.ndarray:
    """uint8 views (V, T, S, S, 3), as the evaluation dataset gives them -> uint8 (F, S, S, 3):
    every view's frames in order, evenly thinned to at most ``max_frames``."""
    frames = views.flatten(0, 1).numpy()  # (V T, S, S, 3)
    keep = np.unique(np.linspace(0, len(frames) - 1, min(max_frames, len(frames))).round().astype(int))
    return frames[keep]


def save_animation(frames: np.ndarray, path: Path, size: int) -> None:
    """uint8 (F, S, S, 3) -> a looping animated WebP of side ``size``."""
    from PIL import Image

    images = [Image.fromarray(f).resize((size, size), Image.BILINEAR) for f in frames]
    images[0].save(path, format="WEBP", save_all=True, append_images=images[1:], loop=0, duration=FRAME_MS,
                   quality=QUALITY, method=4)


def write_thumbnails(records, rows, views: ViewConfig, folder: str | Path, *, size: int = 64, max_frames: int = 32,
                     backend: str = "auto", workers: int = 0, progress: bool = True) -> dict[int, str]:
    """Thumbnails of ``records[row]`` for each row, in ``folder``; -> row -> file name (videos
    that fail to decode get none)."""
    from tqdm.auto import tqdm

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = list(rows)
    dataset = views.dataset([records[r] for r in rows], backend=backend)
    written = {}
    loader = build_loader(dataset, batch_size=1, num_workers=workers)
    for batch in tqdm(loader, total=len(rows), unit="video", desc="inspect: thumbnails", disable=not progress,
                      dynamic_ncols=True):
        if "views" not in batch:
            continue  # failed to decode: no thumbnail (the page says so)
        row = rows[int(batch["index"][0])]
        name = f"{row:06d}.webp"
        save_animation(to_frames(batch["views"][0], max_frames), folder / name, size)
        written[row] = name
    return written
