"""Which views of a video are averaged into its feature (or its test prediction).

"The same encoder" gives quite different numbers under different views, so the views are
an explicit config, written into every feature set's ``protocol.json`` and every card.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

from mlfo.errors import MLFOError

CROPS = {"center": 1, "three": 3, "ten": 10}


@dataclass
class ViewConfig:
    """Clips x crops of a video: N uniformly spread clips (or every window at a stride),
    each resized to a short side and cropped once, three times or ten times."""

    clip_len: int = field(default=16, metadata={"help": "frames per clip"})
    num_clips: int = field(default=10, metadata={"flag": "--clips", "help": "uniformly spread clips per video"})
    stride: int | None = field(default=None, metadata={
        "help": "use every sliding window STRIDE frames apart instead", "metavar": "STRIDE"})
    frame_step: int = field(default=1, metadata={"help": "temporal stride inside a clip"})
    resize: int = field(default=128, metadata={"help": "short side before cropping"})
    crop_size: int = field(default=112, metadata={"help": "crop size"})
    crop_mode: Literal["center", "three", "ten"] = field(default="center", metadata={
        "flag": "--crops", "help": "spatial crops"})

    def __post_init__(self):
        if self.crop_mode not in CROPS:
            raise MLFOError(f"crop_mode: expected one of {', '.join(CROPS)}, got {self.crop_mode!r}")
        if self.stride is None and self.num_clips < 1:
            raise MLFOError(f"num_clips: must be at least 1, got {self.num_clips}")
        if self.stride is not None and self.stride < 1:
            raise MLFOError(f"stride: must be at least 1, got {self.stride}")
        for key in ("clip_len", "frame_step", "resize", "crop_size"):
            if getattr(self, key) < 1:
                raise MLFOError(f"{key}: must be at least 1, got {getattr(self, key)}")
        if self.crop_size > self.resize:
            raise MLFOError(f"crop_size: {self.crop_size} is larger than the resized short side {self.resize}")

    @property
    def views_per_video(self) -> int | None:
        """Fixed number of views per video; None for sliding windows (depends on length)."""
        return None if self.stride else self.num_clips * CROPS[self.crop_mode]

    def describe(self) -> str:
        temporal = (f"sliding windows every {self.stride} frames" if self.stride
                    else f"{self.num_clips} uniform clip{'s' if self.num_clips > 1 else ''}")
        return (f"{temporal} x {CROPS[self.crop_mode]} crop{'s' if CROPS[self.crop_mode] > 1 else ''} "
                f"({self.crop_mode}); {self.clip_len} frames, step {self.frame_step}, "
                f"resize {self.resize}, crop {self.crop_size}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(sampling="sliding" if self.stride else "uniform", crops=CROPS[self.crop_mode],
                 views_per_video=self.views_per_video, text=self.describe())
        if self.stride:
            d["num_clips"] = None
        return d

    def dataset(self, records, backend: str = "auto"):
        from mlfo.data.datasets import EvalClipDataset

        temporal = {"stride": self.stride} if self.stride else {"num_clips": self.num_clips}
        return EvalClipDataset(records, self.clip_len, frame_step=self.frame_step, crop_size=self.crop_size,
                               resize=self.resize, crop_mode=self.crop_mode, backend=backend, **temporal)
