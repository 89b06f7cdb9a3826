"""Frame-exact random access to video files with PyAV.

Container metadata and "seek then take the next frame" are both unreliable: an MPEG-4
(xvid) .avi starts its timestamps at 1, an mp4 edit list hides frames the demuxer still
returns, variable-frame-rate files break ``index = time * fps``, and some containers
report a frame count that is only a guess. So the reader first demuxes the video stream
once (no decoding; about a millisecond for a 10 s clip) and builds a timestamp index: the
sorted presentation timestamps of every packet that yields a frame. Frame ``i`` *is* the
``i``-th timestamp. To read frames it seeks to the nearest keyframe at or before the first
wanted frame, decodes forward and files every decoded frame under the index of its
timestamp; frames close after the current position are reached by decoding on, not by
seeking again. Non-reference frames that nobody asked for are not decoded at all
(``skip_frame``): no other picture depends on them.

Where timestamps cannot name frames (none at all; MPEG-4 packed B-frames or H.264 in AVI,
whose decoded timestamps come out 1, 3, 2, 5, 4, ...), frame ``i`` is the ``i``-th frame
of a sequential decode (``mlfo.data.readers.decode_order``). A timestamp-indexed file
whose decoder turns out to disagree with its index (a timestamp out of order or unknown)
is switched to decode order too; if even that cannot match the index, reading fails with
one line rather than returning another frame.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterator

import av
import torch

from mlfo.data.readers import decode_order, opening
from mlfo.data.readers.base import VideoReader
from mlfo.data.readers.decode_order import SEEK_MIN_GAP
from mlfo.data.readers.opening import short as _short
from mlfo.errors import VideoDecodeError

# Codecs whose "non-reference" frames are measured here to skip exactly (tests/data).
SKIP_NONREF_CODECS = ("h264", "mpeg4", "vp9")
# Where ``verify`` also decodes the first frames to check their timestamps' order: AVI
# (stores no presentation times) and the MPEG-4 part 2 family (DivX / Xvid packing).
ORDER_CHECK_CODECS = ("mpeg4", "msmpeg4v3", "msmpeg4v2", "h263")
ORDER_CHECK_FRAMES = 12


class _OrderLost(Exception):
    """The decoder's timestamps disagree with the timestamp index."""


class _Skips:
    """Which frames the live decode may leave undecoded, shared with ``_decode_skipping``.

    The generator must not hold the reader: a reference cycle keeps an unclosed reader (and
    its decoder threads) alive until a garbage collection, perhaps in a forked worker,
    where freeing threads the child does not have deadlocks.
    """

    def __init__(self):
        self.enabled = False
        self.wanted: set[int] = set()  # frames the current read keeps
        self.skipped: set[int] = set()  # frames perhaps not decoded since the last seek


def _decode_skipping(container, stream, index_of: dict[int, int], skips: _Skips) -> Iterator[av.VideoFrame]:
    """Frames from the current position; unwanted non-reference frames are not decoded."""
    context = stream.codec_context
    for packet in container.demux(stream):
        if opening.is_empty_picture(packet):  # see opening.pictures
            continue
        if skips.enabled:
            index = index_of.get(packet.pts) if packet.size else None
            skip = index is not None and index not in skips.wanted
            context.skip_frame = "NONREF" if skip else "DEFAULT"
            if skip:
                skips.skipped.add(index)
        yield from packet.decode()


class PyAVReader(decode_order.DecodeOrderReading, VideoReader):
    """Video file reader; ``threads`` > 1 (or 0 = FFmpeg's choice) enables threaded decoding.

    One thread is the default because data loading already runs one reader per worker
    process; extra decoder threads then only compete for the same cores. After opening:
    ``order`` is "timestamps" or "decode"; ``damaged_frame`` the frame of the first packet
    the demuxer flagged corrupt (a cut or damaged file), else None; ``declared_frames`` the
    container's own frame count (0 when it has none).
    """

    def __init__(self, path: str | os.PathLike, threads: int = 1):
        self.path = str(path)
        self._threads = threads
        self._container = None
        self._skips = _Skips()
        opening.check_regular_file(self.path)
        self._open()
        self._build_index()
        stream = self._stream
        self.width = int(stream.codec_context.width)
        self.height = int(stream.codec_context.height)
        if self.width <= 0 or self.height <= 0:
            self.close()
            raise VideoDecodeError(f"{self.path}: video stream has no frame size")
        self.fps = opening.frame_rate(self._stream, self._pts, self.num_frames)
        self.rotation = 0  # display rotation, degrees clockwise; known once ``verify`` decoded a picture

    # -- opening and indexing ------------------------------------------------------------

    def _open(self, skim: bool = True) -> None:
        """Open the file; ``skim``: FFmpeg's stream probe decodes nothing (the sizes, rates and
        B-frame delay come from headers; a decoded first frame would be decoded again)."""
        self._container = opening.open_input(self.path, skim)
        self._stream = self._container.streams.video[0]
        if skim and (self._stream.codec_context.width <= 0 or self._stream.codec_context.height <= 0):
            self._container.close()  # a codec whose headers lack the frame size: probe by decoding
            return self._open(skim=False)
        self.container_format = self._container.format.name  # e.g. "avi", "mov,mp4,m4a,3gp,3g2,mj2"
        if self._threads != 1:
            self._stream.thread_type = "AUTO"
            self._stream.thread_count = self._threads
        else:  # FFmpeg's default (0) starts a thread per core for every decoder opened
            self._stream.codec_context.thread_count = 1
        self._primed = False  # whether this decoder has seen the first packet (opening.prime)
        self._frames: Iterator | None = None  # live decode iterator, or None after EOF/seek
        self._next_index: int | None = 0  # index of the frame the live iterator returns next (at least)

    def _prime_decoder(self) -> None:
        """Before the first seek of a decoder: let it see the stream's first packet."""
        if not self._primed:
            opening.prime(self._stream.codec_context, self._first_packet)
            self._primed = True

    def _build_index(self) -> None:
        """One demux pass: timestamps, keyframes, damage, and whether timestamps can name frames."""
        pts: list[int] = []  # in decode order
        key_pts: list[int] = []
        count = discarded = 0
        missing_pts = packed = False
        check_packing = self._stream.codec_context.name == "mpeg4"
        damaged_pts = self._first_packet = None
        try:
            for packet in self._container.demux(self._stream):
                if packet.size == 0:  # the flush packet at end of stream
                    continue
                if self._first_packet is None:
                    self._first_packet = bytes(packet)
                if packet.is_discard:  # before an mp4 edit list's start: decoded, never shown
                    discarded += 1
                    continue
                count += 1
                if packet.is_corrupt and damaged_pts is None:
                    damaged_pts = packet.pts
                if check_packing and decode_order.has_packed_frames(packet):
                    packed, check_packing = True, False
                if packet.pts is None:
                    missing_pts = True
                    continue
                pts.append(packet.pts)
                if packet.is_keyframe:
                    key_pts.append(packet.pts)
        except av.FFmpegError as err:
            if count == 0:
                raise VideoDecodeError(f"{self.path}: cannot read packets ({_short(err)})") from None
            # A truncated file: index what was readable, frames past the damage fail on read.
        self.hidden_frames = discarded  # packets an edit list hides (not counted as frames)
        self.has_timestamps = not missing_pts
        self.declared_frames = max(0, int(self._stream.frames or 0))
        self._key_pts = key_pts
        self._order: decode_order.DecodeOrder | None = None
        self._pts = sorted(set(pts))
        self._index_of = {p: i for i, p in enumerate(self._pts)}
        # Keyframes as frame indices, sorted; the first frame is always a valid start.
        self._key_index = sorted({0} | {self._index_of[p] for p in key_pts})
        self.num_frames = len(self._pts)
        self.damaged_frame = self._index_of.get(damaged_pts)
        self.order = "timestamps"
        if count == 0:
            self.close()
            if self.declared_frames:
                raise VideoDecodeError(f"{self.path}: the container lists {self.declared_frames} frames "
                                       "but none is readable (file truncated?)")
            raise VideoDecodeError(f"{self.path}: video stream has no frames")
        if self._needs_decode_order(missing_pts, packed, pts):
            self._scan_decode_order()
            self.num_frames = self._order.num_frames
        else:
            self._skips.enabled = self._threads == 1 and self._stream.codec_context.name in SKIP_NONREF_CODECS
            self._frames = None  # the first read seeks to its keyframe

    def _needs_decode_order(self, missing_pts: bool, packed: bool, pts: list[int]) -> str:
        """Why timestamps cannot name this stream's frames ("" when they can)."""
        if missing_pts:
            return "no timestamps"
        if packed:
            return "packed B-frames"
        # B-frames, yet packet timestamps that never go back: decode times (AVI stores no
        # presentation times; H.264 in AVI decodes to frames stamped 1, 4, 3, 5, 2, ...).
        if self._stream.codec_context.has_b_frames and len(pts) > 1 and all(a < b for a, b in zip(pts, pts[1:])):
            return "B-frames with decode timestamps"
        return ""

    @property
    def keyframes(self) -> list[int]:
        """Frame indices where reading can start without decoding earlier frames."""
        return list(self._key_index)

    def verify(self, thorough: bool = False) -> None:
        """Decode the last keyframe, that packet alone: one picture, not the last GOP (a
        file that breaks there fails at any frame: a broken codec, damaged data near the
        end). A cut file is caught by the demuxer: where it flagged a packet corrupt
        (``damaged_frame``), that frame and the last are decoded too, as a player would.
        Decode-order files were decoded in full when opened. ``thorough``: decode every
        frame from the start (no colour conversion) and check the count."""
        if self._order is not None:
            return
        try:
            if thorough:
                self._reopen()
                decoded = sum(1 for _ in opening.pictures(self._container, self._stream))
                if decoded != self.num_frames:
                    raise VideoDecodeError(f"{self.path}: {decoded} frames decode, {self.num_frames} are indexed")
                return
            if self.container_format == "avi" or self._stream.codec_context.name in ORDER_CHECK_CODECS:
                # Where timestamps are least trustworthy, check the first frames' order: a
                # disagreement switches to decode order, or fails if even that cannot match.
                self.get_frames(range(min(self.num_frames, ORDER_CHECK_FRAMES)))
                if self._order is not None:  # switched: the scan decoded every frame
                    return
            last = self._key_index[-1]
            if not self._decodes_alone(last):
                self.get_frames([last])  # not a keyframe on its own after all: the usual way
            if self.damaged_frame is not None:
                self.get_frames(sorted({self.damaged_frame, self.num_frames - 1}))
        except av.FFmpegError as err:
            self._frames = None
            raise VideoDecodeError(f"{self.path}: decoding failed ({_short(err)})") from None

    def _decodes_alone(self, index: int) -> bool:
        """Whether the packet of keyframe ``index`` gives a picture on its own (decoder flushed)."""
        pts = self._pts[index]
        self._seek_container(index)
        context = self._stream.codec_context
        context.skip_frame = "DEFAULT"
        for packet in self._container.demux(self._stream):
            if packet.size and packet.pts == pts:
                pictures = packet.decode() + context.decode(None)  # the flush makes it come out now
                context.flush_buffers()
                if pictures:  # FFmpeg's angle is counter-clockwise
                    self.rotation = round(-pictures[0].rotation) % 360
                return bool(pictures)
        return False

    # -- positioning -----------------------------------------------------------------------

    def _reopen(self) -> None:
        self._container.close()
        self._open()

    def _seek_container(self, key: int) -> None:
        """Seek the demuxer to the keyframe whose frame index is ``key``."""
        if key == 0:
            target = min(self._pts[0], self._stream.start_time or 0)
        else:
            target = self._pts[key]
        self._frames = None
        self._prime_decoder()
        try:
            self._container.seek(target, stream=self._stream, backward=True, any_frame=False)
        except av.FFmpegError:  # an unseekable input (raw streams, pipes): start over instead
            self._reopen()

    def _seek_to_frame(self, key: int) -> None:
        """Seek so that decoding restarts at the keyframe whose frame index is ``key``."""
        self._seek_container(key)
        self._frames = _decode_skipping(self._container, self._stream, self._index_of, self._skips)
        self._next_index = 0  # unknown until a frame arrives; only frames >= key are kept
        self._last_pts = None
        self._skips.skipped = set()

    def _keyframe_at_or_before(self, index: int) -> int:
        return self._key_index[bisect.bisect_right(self._key_index, index) - 1]

    # -- reading ---------------------------------------------------------------------------

    def _read(self, indices: list[int], size: tuple[int, int] | None = None) -> dict[int, torch.Tensor]:
        try:
            if self._order is None:
                try:
                    return self._read_by_timestamp(indices, size)
                except _OrderLost as lost:
                    self._switch_to_decode_order(str(lost))
            return self._read_in_decode_order(indices, size)
        except av.FFmpegError as err:
            self._frames = None
            raise VideoDecodeError(f"{self.path}: decoding failed ({_short(err)})") from None

    def _switch_to_decode_order(self, reason: str) -> None:
        indexed = self.num_frames
        self._scan_decode_order()
        if self._order.num_frames != indexed:
            raise VideoDecodeError(
                f"{self.path}: {reason}, and a sequential decode gives {self._order.num_frames} frames, "
                f"not the {indexed} indexed: frames cannot be read exactly"
            )

    def _read_by_timestamp(self, indices: list[int], size) -> dict[int, torch.Tensor]:
        out: dict[int, torch.Tensor] = {}
        self._skips.wanted = set(indices)
        for target in indices:
            if target in out:
                continue
            key = self._keyframe_at_or_before(target)
            live = self._frames is not None and self._next_index <= target
            if live and key - self._next_index <= SEEK_MIN_GAP:
                self._decode_until(target, out, size)
                if target in out:
                    continue
            self._decode_after_seek(key, target, out, size)
        self._skips.wanted = set()
        return out

    def _decode_after_seek(self, key: int, target: int, out: dict, size) -> None:
        """Seek to keyframe ``key`` and decode up to ``target``.

        If the demuxer lands after ``target`` (some demuxers index their seek tables by decode
        time), step back one keyframe at a time; the first frame always works.
        """
        while True:
            self._seek_to_frame(key)
            first = self._decode_until(target, out, size, min_index=key)
            if first is not None and first <= target:
                break
            if key == 0:  # even the seek to the start failed: a fresh open starts there
                self._reopen()
                self._frames = _decode_skipping(self._container, self._stream, self._index_of, self._skips)
                self._next_index, self._last_pts, self._skips.skipped = 0, None, set()
                self._decode_until(target, out, size)
                break
            key = self._keyframe_at_or_before(key - 1)
        if target not in out:
            raise VideoDecodeError(f"{self.path}: frame {target} could not be decoded")

    def _decode_until(self, target: int, out: dict, size, min_index: int = 0) -> int | None:
        """Decode forward until frame ``target`` is in ``out``; keep wanted frames on the way.

        Returns the index of the first frame decoded (at or after ``min_index``), or None
        if the stream ended first. Frames before ``min_index`` follow a seek from before
        the keyframe and may reference pictures the decoder never saw: dropped. Raises
        ``_OrderLost`` when a timestamp is unknown, out of order, or ``target`` is passed.
        """
        first = None
        for frame in self._frames:
            index = self._index_of.get(frame.pts)
            if index is None or (self._last_pts is not None and frame.pts <= self._last_pts):
                self._frames = None
                raise _OrderLost(f"decoded timestamp {frame.pts} is {'unknown' if index is None else 'out of order'}")
            self._last_pts = frame.pts
            if index < min_index:
                continue
            if first is None:
                first = index
                if index > target:  # landed past the target: the caller seeks further back
                    return first
            self._next_index = index + 1
            if index in self._skips.wanted and index not in out:
                out[index] = self._to_tensor(frame, size)
            if index >= target:
                if target not in out and target not in self._skips.skipped:  # a frame that never came out
                    self._frames = None
                    raise _OrderLost(f"frame {target} was not decoded before frame {index}")
                return first  # (a frame skipped before it was wanted: the caller seeks back)
        self._frames = None  # end of stream
        if first is not None and target not in out and target not in self._skips.skipped:
            raise VideoDecodeError(f"{self.path}: frame {target} could not be decoded (file truncated?)")
        return first

    def _to_tensor(self, frame: av.VideoFrame, size: tuple[int, int] | None = None) -> torch.Tensor:
        height, width = size or (self.height, self.width)
        if frame.width != width or frame.height != height:  # a reduced size, or a mid-stream size change
            # Scale in YUV, then convert: measured 4x faster than swscale's one-pass scaled RGB
            # path, which also darkens by ~1 level.
            frame = frame.reformat(width=width, height=height)
        array = frame.to_ndarray(format="rgb24")
        return torch.from_numpy(array)  # (H, W, 3) uint8

    def close(self) -> None:
        container = getattr(self, "_container", None)
        if container is not None:
            self._frames = None
            container.close()
            self._container = None
