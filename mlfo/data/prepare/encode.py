"""Re-encoding one video: every frame of the source, in order, at a smaller short side.

Frames come from mlfo's own reader (``open_video``), so frame ``i`` of the copy is the
picture mlfo's reader calls frame ``i`` of the source, whatever the source's container
does with timestamps; they are scaled in the decoder (``get_frames(size=)``) and encoded
at a constant rate with no B-frames, so the copy's timestamps name its frames directly.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from fractions import Fraction

import numpy as np

CHUNK = 32  # frames decoded per call: bounded memory at any source size


@dataclass(frozen=True)
class Encoding:
    """How a prepared copy is encoded (``benchmarks/prepare_codecs.py`` measured the choices)."""

    codec: str = "mpeg4"  # "mpeg4" (MPEG-4 part 2), "libx264" (no B-frames) or "mjpeg"
    gop: int = 16  # keyframe interval in frames (mjpeg: every frame is one)
    quality: int = 5  # mpeg4 / mjpeg: qscale 2 (best) .. 31; libx264: crf
    fast_decode: bool = False  # libx264 only: x264's "fastdecode" tune (no CABAC, no deblocking)

    def as_dict(self) -> dict:
        return asdict(self)


def scaled_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(height, width) with the short side ``short_side`` (never enlarged), both even for yuv420p."""
    scale = min(1.0, short_side / min(width, height))
    even = lambda x: max(2, int(round(x * scale / 2)) * 2)  # noqa: E731
    return even(height), even(width)


def frame_plan(num_frames: int, fps: float, out_fps: float | None) -> list[int]:
    """Source index of each output frame: all of them, or the nearest frame at ``out_fps``."""
    if not out_fps or abs(out_fps - fps) < 1e-6:
        return list(range(num_frames))
    count = max(1, int(num_frames * out_fps / fps))
    return [min(num_frames - 1, int(round(j * fps / out_fps))) for j in range(count)]


def frame_rate(fps: float) -> Fraction:
    """A frame rate as the fraction containers expect (29.97 -> 30000/1001). MPEG-4 part 2
    stores its clock in 16 bits: an odd rate (187.35 = 78125/417) is approximated within
    that (to a few parts per million)."""
    rate = Fraction(fps).limit_denominator(1001)
    if rate.numerator > 65535:
        rate = Fraction(fps).limit_denominator(max(1, 65535 // math.ceil(fps)))
    return rate


def _add_stream(container, enc: Encoding, rate: Fraction, height: int, width: int):
    stream = container.add_stream(enc.codec, rate=rate)
    stream.height, stream.width = height, width
    ctx = stream.codec_context
    ctx.thread_count = 1  # one encoder per worker process; the pool uses the cores
    if enc.codec == "mjpeg":
        stream.pix_fmt = "yuvj420p"
        ctx.qmin = ctx.qmax = enc.quality  # a fixed quantiser: constant quality
        return stream
    stream.pix_fmt = "yuv420p"
    ctx.gop_size = enc.gop
    ctx.max_b_frames = 0
    if enc.codec == "libx264":
        options = {"crf": str(enc.quality), "preset": "fast", "bframes": "0", "keyint_min": str(enc.gop),
                   "sc_threshold": "0"}
        if enc.fast_decode:
            options["tune"] = "fastdecode"
        stream.options = options
    else:
        ctx.qmin = ctx.qmax = enc.quality
    return stream


def transcode(reader, out_path: str | os.PathLike, enc: Encoding, short_side: int,
              out_fps: float | None = None) -> dict:
    """Write the frames of ``reader`` to ``out_path``; returns what verification needs:
    ``num_frames``, ``fps``, ``width``, ``height`` and a half-size grey thumbnail per frame."""
    import av

    height, width = scaled_size(reader.width, reader.height, short_side)
    plan = frame_plan(reader.num_frames, reader.fps, out_fps)
    rate = frame_rate(out_fps or reader.fps)
    thumbs = []
    with av.open(str(out_path), mode="w", format="mp4") as container:
        stream = _add_stream(container, enc, rate, height, width)
        for start in range(0, len(plan), CHUNK):
            frames = reader.get_frames(plan[start:start + CHUNK], size=(height, width)).numpy()
            thumbs.append(thumbnails(frames))
            for frame in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return {"num_frames": len(plan), "fps": round(float(rate), 4), "width": width, "height": height,
            "thumbs": np.concatenate(thumbs)}


def thumbnails(frames: np.ndarray) -> np.ndarray:
    """uint8 (F, H/2, W/2) grey frames at half size, of uint8 (F, H, W, 3) frames: fine enough
    that a frame differs from its moving neighbours by more than coding noise (8x8 block
    means were not: a slow pan moves them less than the codec does)."""
    count, height, width, _ = frames.shape
    h, w = height // 2 * 2, width // 2 * 2
    grey = frames[:, :h, :w].astype(np.float32).mean(axis=3)
    return grey.reshape(count, h // 2, 2, w // 2, 2).mean(axis=(2, 4)).round().astype(np.uint8)
