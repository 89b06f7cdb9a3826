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


def write_packed_bframes_avi(path: str | Path, num_frames: int, gop: int = 12) -> Path:
    """MPEG-4 part 2 in AVI with DivX-style packed B-frames, bar-coded like the others.

    Encodes with one B-frame between anchors, then repacks as DivX 5 / Xvid "packed
    bitstream" does: each anchor VOP and the B-VOP after it share one packet, and the
    B-frame's own slot holds a 6-byte not-coded VOP; the extradata carries the
    ``DivX503b1393p`` user data that tells decoders so. Decoded in sequence, the pictures
    come out in display order stamped 1, 3, 2, 5, 4, ... (like pymecavideo's
    ``Force_constante.avi``, but with a keyframe every ``gop`` frames).
    """
    path = Path(path)
    plain = path.with_name(path.stem + ".unpacked.avi")
    write_indexed_video(plain, num_frames, codec="mpeg4", gop=gop, bframes=1)
    with av.open(str(plain)) as source:
        stream = source.streams.video[0]
        packets = [(bytes(p), p.is_keyframe) for p in source.demux(stream) if p.size]
        extradata = stream.codec_context.extradata or b""
    plain.unlink()

    def is_b(data: bytes) -> bool:  # vop_coding_type 2 = B, in the 2 bits after the start code
        at = data.find(b"\x00\x00\x01\xb6")
        return at >= 0 and data[at + 4] >> 6 == 2

    def not_coded_vop(slot: int) -> bytes:
        # P-VOP header with vop_coded = 0: type 01, modulo 0, marker, 5-bit time, marker, 0, stuffing
        bits = "01" + "0" + "1" + format(slot % 25, "05b") + "1" + "0"
        bits += "0" + "1" * ((8 - (len(bits) + 1) % 8) % 8)
        return b"\x00\x00\x01\xb6" + int(bits, 2).to_bytes(len(bits) // 8, "big")

    packed = []
    i = 0
    while i < len(packets):
        data, key = packets[i]
        if i + 1 < len(packets) and is_b(packets[i + 1][0]):
            packed += [(data + packets[i + 1][0], key), (not_coded_vop(i + 1), False)]
            i += 2
        else:
            packed.append((data, key))
            i += 1
    with av.open(str(path), "w", format="avi") as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.extradata = extradata + b"\x00\x00\x01\xb2DivX503b1393p"
        stream.codec_context.codec_tag = "DX50"
        for slot, (data, key) in enumerate(packed):
            packet = av.Packet(data)
            packet.pts = packet.dts = slot
            packet.time_base = Fraction(1, 25)
            packet.is_keyframe = key
            packet.stream = stream
            out.mux(packet)
    return path
