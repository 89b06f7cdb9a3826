"""Optional torchcodec backend, used only where it is known to be frame-exact.

torchcodec 0.13 (the release that loads beside the CPU torch 2.13; it needs the
system's FFmpeg libraries, e.g. Debian's ``ffmpeg`` package) decodes fast, but measured
here it is wrong on MPEG-4 .avi files (fails near the end) and on mp4 files whose edit
list hides frames (returns frames a GOP late). So this reader first builds the same
timestamp index as the PyAV reader (one demux pass) and hands the file to PyAV when:
the container is AVI, an edit list hides frames, the frames are numbered by decode order
(no timestamps, or packed B-frames), or torchcodec counts a different number of frames.
``fallback_reason`` says why; it is empty when torchcodec decodes.

``device="cuda"`` decodes on the GPU (NVDEC) and returns CUDA tensors; the same checks
decide where it may, and frames PyAV reads are moved to the device, so one reader gives
one kind of tensor. CUDA cannot be initialised in forked DataLoader workers: use it where
decoding runs in the training process (or in spawned workers). Not exercised here (no GPU).
"""

from __future__ import annotations

import torch

from mlfo.data.readers.base import VideoReader
from mlfo.data.transforms import resize_clip
from mlfo.errors import MLFOError, VideoDecodeError

try:
    from torchcodec.decoders import VideoDecoder

    IMPORT_ERROR = ""
except Exception as err:  # ImportError, or OSError/RuntimeError when FFmpeg libraries are missing
    VideoDecoder = None
    IMPORT_ERROR = str(err).splitlines()[0] if str(err) else type(err).__name__


def torchcodec_available() -> bool:
    return VideoDecoder is not None


def require_torchcodec() -> None:
    if VideoDecoder is None:
        raise MLFOError(
            f"backend: torchcodec is not usable here ({IMPORT_ERROR}); "
            "install torchcodec==0.13.0 and the system ffmpeg, or use backend 'pyav'"
        )


class TorchCodecReader(VideoReader):
    """torchcodec over an open PyAV reader (``index``), which gives the metadata and the
    frame count, and which reads the file itself wherever torchcodec is not exact."""

    def __init__(self, index: VideoReader, threads: int = 1, device: str = "cpu"):
        require_torchcodec()
        self._index = index
        self.device = torch.device(device)
        self.path = self._index.path
        self.num_frames, self.fps = self._index.num_frames, self._index.fps
        self.height, self.width = self._index.height, self._index.width
        self._decoder = None
        self.fallback_reason = self._unsafe_reason()
        if not self.fallback_reason:
            try:
                self._decoder = VideoDecoder(
                    self.path, seek_mode="exact", dimension_order="NHWC", num_ffmpeg_threads=threads,
                    device=str(self.device),
                )
            except Exception as err:
                self.fallback_reason = f"torchcodec cannot open it ({str(err).splitlines()[0]})"
            else:
                if self._decoder.metadata.num_frames != self.num_frames:
                    self.fallback_reason = (
                        f"torchcodec counts {self._decoder.metadata.num_frames} frames, "
                        f"the timestamp index {self.num_frames}"
                    )
                    self._decoder = None
        if self._decoder is not None:
            self._index.close()  # metadata taken; torchcodec reads from now on

    def _unsafe_reason(self) -> str:
        if self.path.lower().endswith(".avi") or "avi" in self._index.container_format.split(","):
            return "AVI container (torchcodec 0.13 misreads MPEG-4 .avi)"
        if self._index.hidden_frames:
            return "an edit list hides frames (torchcodec 0.13 ignores it)"
        if not self._index.has_timestamps:
            return "stream has no timestamps"
        if getattr(self._index, "order", "timestamps") != "timestamps":
            return "frames are numbered by decode order (packed B-frames)"
        return ""

    def _read(self, indices: list[int], size: tuple[int, int] | None = None) -> dict[int, torch.Tensor]:
        if self._decoder is None:
            frames = self._index._read(indices, size)
            return {i: f.to(self.device) for i, f in frames.items()} if self.device.type != "cpu" else frames
        try:
            batch = self._decoder.get_frames_at(indices).data  # (T, H, W, 3) uint8, on self.device
        except Exception as err:
            raise VideoDecodeError(f"{self.path}: decoding failed ({str(err).splitlines()[0]})") from None
        if size is not None and tuple(size) != tuple(batch.shape[1:3]):
            batch = resize_clip(batch, tuple(size))
        return dict(zip(indices, batch))

    def verify(self, thorough: bool = False) -> None:
        if self._decoder is None:
            return self._index.verify(thorough)
        super().verify(thorough)

    def close(self) -> None:
        self._decoder = None
        index = getattr(self, "_index", None)
        if index is not None:
            index.close()
