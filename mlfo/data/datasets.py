"""PyTorch datasets for pretraining (three clips per video) and evaluation (fixed views).

Both decode each video once per item: the frames every clip needs are fetched in one
``get_frames`` call and sliced afterwards. A video that fails to decode (or is too
short) is logged and returned as ``None``; ``collate_skip_none`` drops and counts it, so
one bad file never stops a run.

Randomness (pretraining): every item draws from its own numpy Generator seeded by
``(seed, epoch, index, rank)``. Items therefore get different streams on every worker,
rank and epoch (the reference implementation gave every worker the same stream), yet a
run is reproducible and does not depend on the number of DataLoader workers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset

from mlfo.data.sampling import sample_mlfo_indices, sliding_window_indices, uniform_clip_indices
from mlfo.data.transforms import RandomResizedCropFlip, eval_views, normalize_clips, resize_short_side
from mlfo.data.readers import open_video

if TYPE_CHECKING:
    from mlfo.data.sources import VideoRecord

log = logging.getLogger(__name__)


def _rank() -> int:
    """This process's distributed rank (0 when not distributed)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return int(os.environ.get("RANK", 0))


def _describe(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


class PretrainDataset(Dataset):
    """MLFO pretraining samples: clips A, B and G of one video after crop + flip.

    ``[i] -> {"clips": uint8 (3, T, S, S, 3), "index": i}`` or ``None`` when the video
    cannot be used. Colour augmentation and normalisation happen later, batched on the
    training device (``ColorAugment``). Call ``set_epoch`` at the start of every epoch.
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        clip_len: int = 16,
        r_max: float = 3,
        crop_size: int = 112,
        crop_scale: tuple[float, float] = (0.5, 1.0),
        backend: str = "auto",
        seed: int = 0,
    ):
        self.records = list(records)
        self.clip_len, self.r_max = clip_len, r_max
        self.backend, self.seed = backend, seed
        self.geometry = RandomResizedCropFlip(crop_size, scale=crop_scale)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """New augmentations and clip positions every epoch (reproducible from the seed)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.records)

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index, _rank()])

    def __getitem__(self, index: int) -> dict | None:
        record = self.records[index]
        rng = self.rng(index)
        try:
            with open_video(record.path, self.backend) as reader:
                idx_a, idx_b, idx_g = sample_mlfo_indices(reader.num_frames, self.clip_len, self.r_max, rng)
                # G is every second index of A + B: one decode of the 2T span serves all three.
                span = reader.get_frames(idx_a + idx_b)  # (2T, H, W, 3)
        except Exception as err:  # noqa: BLE001 - any bad file is skipped, never fatal
            log.warning("skipping %s: %s", record.path, _describe(err))
            return None
        t = self.clip_len
        clips = (span[:t], span[t:], span[::2])
        generator = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
        out = torch.stack([self.geometry(clip, generator) for clip in clips])  # (3, T, S, S, 3)
        return {"clips": out, "index": index}


class EvalClipDataset(Dataset):
    """Deterministic evaluation views of each video: clips x crops, normalised.

    Clips: ``num_clips`` spread uniformly, or every window ``stride`` frames apart when
    ``stride`` is given. Crops after resizing the short side to ``resize``: 1 ("center"),
    3 ("three") or 10 ("ten"). ``[i] -> {"views": float (V, 3, T, S, S), "label", "index"}``
    with V = clips x crops (clip-major), or ``None`` when the video cannot be used.
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        clip_len: int,
        num_clips: int = 10,
        stride: int | None = None,
        frame_step: int = 1,
        crop_size: int = 112,
        resize: int = 128,
        crop_mode: str = "center",
        backend: str = "auto",
    ):
        if crop_size > resize:
            raise ValueError(f"crop_size {crop_size} larger than resize {resize}")
        self.records = list(records)
        self.clip_len, self.num_clips, self.stride, self.frame_step = clip_len, num_clips, stride, frame_step
        self.crop_size, self.resize, self.crop_mode = crop_size, resize, crop_mode
        self.backend = backend

    def __len__(self) -> int:
        return len(self.records)

    def clip_indices(self, num_frames: int) -> list[list[int]]:
        if self.stride is not None:
            return sliding_window_indices(num_frames, self.clip_len, self.stride, self.frame_step)
        return uniform_clip_indices(num_frames, self.clip_len, self.num_clips, self.frame_step)

    def __getitem__(self, index: int) -> dict | None:
        record = self.records[index]
        try:
            with open_video(record.path, self.backend) as reader:
                clips = self.clip_indices(reader.num_frames)
                needed = sorted({i for clip in clips for i in clip})
                frames = reader.get_frames(needed)  # (U, H, W, 3)
        except Exception as err:  # noqa: BLE001 - any bad file is skipped, never fatal
            log.warning("skipping %s: %s", record.path, _describe(err))
            return None
        frames = resize_short_side(frames, self.resize)  # once for every clip sharing a frame
        position = {frame: k for k, frame in enumerate(needed)}
        views = [
            eval_views(frames[[position[i] for i in clip]], self.resize, self.crop_size, self.crop_mode)
            for clip in clips
        ]  # each (crops, T, S, S, 3); already resized, so eval_views only crops
        views = torch.cat(views)  # (V, T, S, S, 3)
        return {"views": normalize_clips(views), "label": int(getattr(record, "label", -1)), "index": index}


def collate_skip_none(batch: list[dict | None]) -> dict:
    """Stack a batch of dataset items, dropping the ``None`` of unusable videos.

    Returns a dict of stacked tensors plus ``num_skipped``. Tensors whose first dimension
    differs between items (sliding-window views) are concatenated along it instead, and
    ``<key>_counts`` gives each item's share. A batch of only ``None`` gives
    ``{"num_skipped": len(batch)}``.
    """
    items = [item for item in batch if item is not None]
    out: dict = {"num_skipped": len(batch) - len(items)}
    if not items:
        return out
    for key in items[0]:
        values = [item[key] for item in items]
        first = values[0]
        if isinstance(first, torch.Tensor):
            if all(v.shape == first.shape for v in values):
                out[key] = torch.stack(values)
            else:
                out[key] = torch.cat(values)
                out[f"{key}_counts"] = torch.tensor([v.shape[0] for v in values])
        elif isinstance(first, (bool, int, float)):
            out[key] = torch.tensor(values)
        else:
            out[key] = values
    return out
