"""Opening a video file with PyAV without a hang, a crash, or a decoder that reads it wrongly.

Three things learned from real files:

- Opening a FIFO (or socket, device) blocks forever, so only regular files are opened.
- PyAV 16 sizes its per-stream codec options before FFmpeg's probe finds the streams; in
  containers whose header lists none (MPEG program streams, FLV) the probe writes past that
  array and the process dies. The skim options (no decoding while probing) are therefore
  passed only to containers whose header lists every stream (mp4/mov, Matroska/WebM, AVI, Ogg).
- Some decoders learn how to decode a stream from its first packet only: FFmpeg's H.264
  decoder reads the x264 version from the first keyframe's SEI and applies that encoder's
  bug workarounds (a High 4:4:4 file decodes to another picture without them; max error
  255), its MPEG-4 decoder picks Xvid's IDCT from Xvid's user data there.
  A reader that seeks before decoding anything never sees it, so ``prime`` shows the decoder
  the first packet, decoding no picture, before the first seek; flushes keep what it learned.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from fractions import Fraction

import av

from mlfo.errors import VideoDecodeError

SKIM = {"skip_frame": "all"}  # codec option for avformat_find_stream_info only


def short(err: BaseException) -> str:
    """One line describing an exception (FFmpeg errors repeat the file name; drop it)."""
    if isinstance(err, (OSError, av.FFmpegError)) and getattr(err, "strerror", None):  # str() adds errno, path
        return str(err.strerror)
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def check_regular_file(path: str) -> None:
    """Raise ``VideoDecodeError`` unless ``path`` is a regular file (never opens it)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise VideoDecodeError(f"{path}: file not found") from None
    except OSError as err:
        raise VideoDecodeError(f"{path}: cannot stat ({err.strerror})") from None
    if stat.S_ISDIR(mode):
        raise VideoDecodeError(f"{path}: is a directory, not a video file (use backend 'frames')")
    if not stat.S_ISREG(mode):
        kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
        raise VideoDecodeError(f"{path}: {kind}, not a video file (not opened)")


def header_lists_streams(path: str) -> bool:
    """True where the container's header names every stream (skim options are safe there)."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return False
    return (head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot")  # mp4 / mov
            or head.startswith(b"\x1a\x45\xdf\xa3")  # Matroska / WebM
            or (head.startswith(b"RIFF") and head[8:12] == b"AVI ")
            or head.startswith(b"OggS"))


def open_input(path: str, skim: bool) -> av.container.InputContainer:
    """``av.open`` for reading; ``skim``: the stream probe decodes nothing, where that is safe."""
    options = SKIM if skim and header_lists_streams(path) else None
    try:
        container = av.open(path, metadata_errors="ignore", options=options)
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as err:
        raise VideoDecodeError(f"{path}: not a readable video ({short(err)})") from None
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(f"{path}: no video stream")
    # Theora and VP6 pictures can start at an odd offset inside the coded frame; FFmpeg's
    # default crop keeps whole aligned columns (a wider picture), which would then be scaled.
    context = container.streams.video[0].codec_context
    context.flags |= av.codec.context.Flags.unaligned
    return container


def pictures(container: av.container.InputContainer, stream) -> Iterator[av.VideoFrame]:
    """A sequential decode from the current position. A zero-length packet with a timestamp
    (Theora's "picture unchanged") is no picture, and sent to the decoder it would start the
    end-of-stream drain (every later packet then fails): only the final, untimed one is sent."""
    for packet in container.demux(stream):
        if not is_empty_picture(packet):
            yield from packet.decode()


def is_empty_picture(packet: av.Packet) -> bool:
    return packet.size == 0 and packet.pts is not None


def prime(context: av.CodecContext, first_packet: bytes | None) -> None:
    """Show a fresh decoder the stream's first packet without decoding a picture (see above)."""
    if not first_packet:
        return
    context.skip_frame = "ALL"
    try:
        context.decode(av.Packet(first_packet))  # pictures a decoder outputs anyway are dropped
    except av.FFmpegError:
        pass  # headers are parsed before a decoder refuses the (skipped) picture
    finally:
        context.skip_frame = "DEFAULT"


def frame_rate(stream: av.video.stream.VideoStream, pts: list[int] | None, num_frames: int) -> float:
    """Frames per second: the container's rate, else the span of the timestamps, else 25."""
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and float(rate) > 0:
            return float(rate)
    if pts is not None and num_frames > 1:
        span = (pts[-1] - pts[0]) * Fraction(stream.time_base)
        if span > 0:
            return float((num_frames - 1) / span)
    return 25.0
