"""Tiny test videos whose frames carry their own index.

Each frame shows its index as a bar code: 2 rows x 6 columns of big black/white blocks,
one bit each (12 bits, indices up to 4095), which survives lossy compression at any
quality. ``read_index(frame)`` recovers the index from a decoded RGB frame, so a test
can check that a reader returned frame ``i`` when asked for frame ``i``.

    write_indexed_video(tmp_path / "a.mp4", 60, codec="libx264")
    assert read_index(reader.get_frames([7])[0]) == 7
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

ROWS, COLS = 2, 6
BITS = ROWS * COLS


def index_image(index: int, size: tuple[int, int] = (64, 48)) -> np.ndarray:
    """uint8 (H, W, 3) RGB frame showing ``index`` as a bar code; ``size`` is (width, height)."""
    width, height = size
    image = np.zeros((height, width, 3), np.uint8)
    for bit in range(BITS):
        if (index >> bit) & 1:
            row, col = divmod(bit, COLS)
            image[row * height // ROWS:(row + 1) * height // ROWS,
                  col * width // COLS:(col + 1) * width // COLS] = 255
    # A faint colour tint per frame keeps neighbouring frames from being bit-identical.
    image[..., 1] = np.where(image[..., 1] > 0, 255 - index % 7, index % 7)
    return image


def read_index(frame) -> int:
    """The index drawn by ``index_image`` in a decoded (H, W, 3) frame (tensor or array)."""
    image = np.asarray(frame, dtype=np.float32).mean(axis=2)
    height, width = image.shape
    index = 0
    for bit in range(BITS):
        row, col = divmod(bit, COLS)
        top, bottom = row * height // ROWS, (row + 1) * height // ROWS
        left, right = col * width // COLS, (col + 1) * width // COLS
        # The block centre: away from edges, where compression smears the neighbours in.
        cy, cx = (top + bottom) // 2, (left + right) // 2
        dy, dx = max(1, (bottom - top) // 4), max(1, (right - left) // 4)
        if image[cy - dy:cy + dy, cx - dx:cx + dx].mean() > 127:
            index |= 1 << bit
    return index


def write_indexed_video(
    path: str | Path,
    num_frames: int,
    codec: str = "libx264",
    size: tuple[int, int] = (64, 48),
    fps: int = 25,
    gop: int | None = None,
    bframes: int | None = None,
    pts: Sequence[int] | None = None,
    time_base: Fraction | None = None,
    first_index: int = 0,
) -> Path:
    """Encode frames ``first_index .. first_index + num_frames - 1`` as bar codes.

    ``pts`` gives each frame's timestamp in ``time_base`` (default 1/fps) for
    variable-frame-rate files; ``gop`` is the keyframe interval and ``bframes`` the
    maximum run of B-frames. The container follows the file suffix.
    """
    frames = [index_image(first_index + i, size) for i in range(num_frames)]
    return write_video(path, frames, codec, fps, gop, bframes, pts, time_base)


def write_video(
    path: str | Path,
    frames: Sequence[np.ndarray],
    codec: str = "libx264",
    fps: int = 25,
    gop: int | None = None,
    bframes: int | None = None,
    pts: Sequence[int] | None = None,
    time_base: Fraction | None = None,
) -> Path:
    """Encode RGB uint8 frames (H, W, 3) with PyAV; options as in write_indexed_video."""
    path = Path(path)
    container = av.open(str(path), "w")
    stream = container.add_stream(codec, rate=fps)
    stream.height, stream.width = frames[0].shape[:2]
    stream.pix_fmt = "yuv420p"
    if time_base is not None:
        stream.codec_context.time_base = time_base
    if gop is not None:
        stream.codec_context.gop_size = gop
    if bframes is not None:
        stream.codec_context.max_b_frames = bframes
    if codec == "libx264":
        stream.options = {"crf": "18", **({"keyint_min": str(gop), "sc_threshold": "0"} if gop else {})}
    elif codec.startswith("libvpx"):
        stream.options = {"crf": "10", "b": "0", "deadline": "realtime", "cpu-used": "8"}
    else:
        stream.codec_context.bit_rate = 400_000
    for i, image in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = pts[i] if pts is not None else i
        if time_base is not None:
            frame.time_base = time_base
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def write_empty_video(path: str | Path, codec: str = "mpeg4") -> Path:
    """A container with a video stream and no frames at all."""
    container = av.open(str(path), "w")
    stream = container.add_stream(codec, rate=25)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    container.start_encoding()  # write the header although no frame follows
    container.close()
    return Path(path)


def trim_mp4_start(path: str | Path, out: str | Path, frames: int) -> Path:
    """Copy an mp4 whose edit list hides its first ``frames`` frames (still in the file).

    Rewrites the first ``elst`` entry: media_time moves forward by ``frames`` frame
    durations, the segment gets that much shorter. Assumes a constant frame rate and the
    version-0 box PyAV's muxer writes. Players (and a correct reader) must start at the
    old frame ``frames``; the demuxer still returns the hidden packets, marked discard.
    """
    data = bytearray(Path(path).read_bytes())
    at = data.find(b"elst")
    assert at > 0 and data[at + 4] == 0, "no version-0 edit list in the file"
    movie_scale = struct.unpack(">I", data[data.find(b"mvhd") + 16:data.find(b"mvhd") + 20])[0]
    mdhd = data.find(b"mdhd")
    media_scale = struct.unpack(">I", data[mdhd + 16:mdhd + 20])[0]
    container = av.open(str(path))
    rate = container.streams.video[0].average_rate
    container.close()
    segment, media_time = struct.unpack(">Ii", data[at + 12:at + 20])
    segment -= int(frames * movie_scale / rate)
    media_time += int(frames * media_scale / rate)
    data[at + 12:at + 20] = struct.pack(">Ii", segment, media_time)
    Path(out).write_bytes(data)
    return Path(out)
