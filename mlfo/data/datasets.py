"""What one item of each dataset is: MLFO's three clips, one random training clip, or the
fixed evaluation views of a video.

Items are keyed: ``ds[index]`` or ``ds[(epoch, index)]``. Every random choice of an item
comes from its own numpy Generator seeded by ``derive_seed(seed, "clips", epoch, index)``: not by the
DataLoader worker, the rank or how many items came before. So a run does not depend on
the number of workers or processes (the reference implementation gave every worker the
same stream), and a resumed run draws exactly the clips an uninterrupted one would.

Each item decodes its video once: the frames every clip needs are fetched in one
``get_frames`` call and sliced afterwards. A video that cannot be used raises (a
``VideoDecodeError``, or whatever the decoder raised); ``mlfo.data.loading`` turns that
into a named, counted skip.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset

from mlfo.data.readers import open_video
from mlfo.data.sampling import clip_indices, mlfo_min_frames, sample_mlfo_indices, sliding_window_indices, uniform_clip_indices
from mlfo.data.transforms import RandomResizedCropFlip, eval_views, resize_short_side
from mlfo.train.seeding import derive_seed

if TYPE_CHECKING:
    from mlfo.data.sources import VideoRecord


def item_key(key) -> tuple[int, int]:
    """``index`` or ``(epoch, index)`` -> ``(epoch, index)``."""
    if isinstance(key, (tuple, list)):
        return int(key[0]), int(key[1])
    return 0, int(key)


class _KeyedVideos(Dataset):
    """Records plus the per-item random stream of a training dataset."""

    def __init__(self, records: Sequence[VideoRecord], backend: str, seed: int):
        self.records = list(records)
        self.backend, self.seed = backend, seed

    def __len__(self) -> int:
        return len(self.records)

    def rng(self, epoch: int, index: int) -> np.random.Generator:
        return np.random.default_rng(derive_seed(self.seed, "clips", epoch, index))


class ThreeClipDataset(_KeyedVideos):
    """MLFO pretraining samples: clips A, B and G of one video after crop + flip.

    ``[(epoch, i)] -> {"clips": uint8 (3, T, S, S, 3), "index": i}``. Colour augmentation
    and normalisation happen later, batched on the training device. Needs videos of more
    than ``min_frames`` = 2T frames.

    ``decode_size`` (opt-in; None = frames as stored, the exact reference path): frames
    come out of the decoder's scaler with this short side (never enlarged), so colour
    conversion and the crop's resize work on fewer pixels. The crops are then drawn on
    the smaller frame: other pixels, the same augmentation distribution. Keep it at least
    ``crop_size / sqrt(crop_scale[0] * 3/4)`` (160 for 112 at scale 0.5) and no crop is
    ever enlarged.
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
        decode_size: int | None = None,
        decode_device: str = "cpu",
    ):
        super().__init__(records, backend, seed)
        self.clip_len, self.r_max = clip_len, r_max
        self.open_options = {"device": decode_device} if decode_device != "cpu" else {}  # torchcodec
        self.geometry = RandomResizedCropFlip(crop_size, scale=crop_scale)
        if decode_size is not None and decode_size < 1:
            raise ValueError(f"decode_size must be a positive short side, got {decode_size}")
        self.decode_size = decode_size

    @property
    def min_frames(self) -> int:
        return mlfo_min_frames(self.clip_len)  # videos with at most 2T frames cannot give A, B and G

    def __getitem__(self, key) -> dict:
        epoch, index = item_key(key)
        rng = self.rng(epoch, index)
        with open_video(self.records[index].path, self.backend, **self.open_options) as reader:
            idx_a, idx_b, _ = sample_mlfo_indices(reader.num_frames, self.clip_len, self.r_max, rng)
            # G is every second index of A + B: one decode of the 2T span serves all three.
            span = reader.get_frames(idx_a + idx_b, size=self._decoded_size(reader))  # (2T, H, W, 3)
        t = self.clip_len
        clips = (span[:t], span[t:], span[::2])
        generator = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
        out = torch.stack([self.geometry(clip, generator) for clip in clips])  # (3, T, S, S, 3)
        return {"clips": out, "index": index}


    def _decoded_size(self, reader) -> tuple[int, int] | None:
        """(h, w) with short side ``decode_size`` and the video's aspect, or None (as stored)."""
        short = min(reader.height, reader.width)
        if self.decode_size is None or short <= self.decode_size:
            return None
        scale = self.decode_size / short
        return max(1, round(reader.height * scale)), max(1, round(reader.width * scale))


class RandomClipDataset(_KeyedVideos):
    """One random clip per video and epoch, for fine-tuning: random start, random resized
    crop + flip. ``[(epoch, i)] -> {"clip": uint8 (T, S, S, 3), "label", "index"}``."""

    def __init__(self, records, clip_len: int, frame_step: int, crop_size: int, crop_scale, backend="auto", seed=0):
        super().__init__(records, backend, seed)
        self.clip_len, self.frame_step = clip_len, frame_step
        self.geometry = RandomResizedCropFlip(crop_size, scale=crop_scale)

    def __getitem__(self, key) -> dict:
        epoch, index = item_key(key)
        record = self.records[index]
        rng = self.rng(epoch, index)
        with open_video(record.path, self.backend) as reader:
            extent = (self.clip_len - 1) * self.frame_step + 1
            start = int(rng.integers(0, max(0, reader.num_frames - extent) + 1))
            frames = reader.get_frames(clip_indices(start, self.clip_len, reader.num_frames, self.frame_step))
        gen = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
        return {"clip": self.geometry(frames, gen), "label": int(record.label), "index": index}


class EvalClipDataset(Dataset):
    """Deterministic evaluation views of each video: clips x crops, as uint8.

    Clips: ``num_clips`` spread uniformly, or every window ``stride`` frames apart when
    ``stride`` is given. Crops after resizing the short side to ``resize``: 1 ("center"),
    3 ("three") or 10 ("ten"). ``[i] -> {"views": uint8 (V, T, S, S, 3), "label", "index"}``
    with V = clips x crops (clip-major). A video shorter than a clip repeats its last frame.
    The views stay uint8 through the workers, IPC and pinned memory (a quarter of float32's
    bytes); ``normalize_clips`` runs batched on the device that consumes them.
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

    def __getitem__(self, key) -> dict:
        _, index = item_key(key)
        record = self.records[index]
        with open_video(record.path, self.backend) as reader:
            clips = self.clip_indices(reader.num_frames)
            needed = sorted({i for clip in clips for i in clip})
            frames = reader.get_frames(needed)  # (U, H, W, 3)
        frames = resize_short_side(frames, self.resize)  # once for every clip sharing a frame
        position = {frame: k for k, frame in enumerate(needed)}
        views = [
            eval_views(frames[[position[i] for i in clip]], self.resize, self.crop_size, self.crop_mode)
            for clip in clips
        ]  # each (crops, T, S, S, 3); already resized, so eval_views only crops
        views = torch.cat(views)  # uint8 (V, T, S, S, 3)
        return {"views": views, "label": int(getattr(record, "label", -1)), "index": index}
