"""Frame numbers by decode order, for streams whose timestamps cannot name their frames.

Three kinds of file need it. Streams without timestamps (raw .h264 / .m4v) carry nothing
else. B-frame streams whose container stores decode times only (H.264 in AVI): the decoder
stamps its pictures with the timestamps of the packets they came in, 1, 4, 3, 5, 2, ...
And MPEG-4 part 2 with packed B-frames (DivX / Xvid "packed bitstream", common in old
.avi files) stores a P-frame and the following B-frame in one packet and leaves a 6-byte
placeholder in the B-frame's slot; FFmpeg's decoder outputs the pictures in the right
order but stamps them 1, 3, 2, 5, 4, ... (``mpeg4_unpack_bframes`` splits the packets
but the stamps stay out of order). In both, frame ``i`` is by definition the ``i``-th
picture a sequential decode outputs.

``scan`` decodes the stream once (no colour conversion) and records, for every output
frame, the timestamp the decoder gave it, and which keyframes are safe places to start:
a keyframe whose timestamp is unique in the stream and equal to its packet's. A reader
seeks to such a keyframe, waits for it to come out, counts frames from its index and
checks every later timestamp against the scan; any disagreement means "decode from the
start", which is exact by definition.
"""

from __future__ import annotations

import os
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import av
import torch

from mlfo.data.readers import opening
from mlfo.data.readers.opening import short
from mlfo.errors import VideoDecodeError

VOP_START = b"\x00\x00\x01\xb6"  # MPEG-4 part 2: a video object plane (one picture) starts
CACHE_SIZE = 1024  # scans kept per process (a DataLoader worker opens the same files each epoch)
# Seeking costs about as much as decoding a few frames; when the keyframe before the next
# wanted frame is at most this many frames ahead of the decoder, decoding on is cheaper.
SEEK_MIN_GAP = 8
SYNC_LIMIT = 64  # frames to wait, after a seek, for a keyframe the scan knows


@dataclass(frozen=True)
class DecodeOrder:
    """What one sequential decode of a stream output."""

    pts: tuple[int | None, ...]  # timestamp the decoder gave output frame i
    seek_points: tuple[tuple[int, int], ...]  # (frame index, keyframe timestamp), ascending; (0, ...) first

    @property
    def num_frames(self) -> int:
        return len(self.pts)

    def start_for(self, target: int) -> tuple[int, int | None]:
        """The last safe start at or before frame ``target``: (index, timestamp or None = the file's start)."""
        best: tuple[int, int | None] = (0, None)
        for index, pts in self.seek_points:
            if index > target:
                break
            if index > 0:
                best = (index, pts)
        return best


def has_packed_frames(packet: av.Packet) -> bool:
    """True for an MPEG-4 part 2 packet holding more than one picture (packed B-frames)."""
    return packet.size > 8 and bytes(packet).count(VOP_START) > 1


_cache: OrderedDict[tuple, DecodeOrder] = OrderedDict()


def scan(path: str, open_stream: Callable[[], tuple[Iterable[av.VideoFrame], Callable[[], None]]],
         key_packet_pts: Iterable[int]) -> DecodeOrder:
    """Decode the whole stream once (``open_stream()`` -> (frames, close)); cached per file version.

    Raises ``av.FFmpegError`` from the decoder when no frame at all decodes.
    """
    try:
        stat = os.stat(path)
        key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
    except OSError:
        key = None
    if key is not None and key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    frames, close = open_stream()
    pts: list[int | None] = []
    keys: list[int] = []
    try:
        for frame in frames:
            if frame.key_frame:
                keys.append(len(pts))
            pts.append(frame.pts)
    except av.FFmpegError:
        if not pts:
            raise
        # A damaged tail: the frames before it are the stream (reads past them fail).
    finally:
        close()
    counts = Counter(pts)
    packet_keys = set(key_packet_pts)
    seek_points = [(0, pts[0] if pts else 0)]
    seek_points += [(i, pts[i]) for i in keys if i > 0 and pts[i] is not None
                    and counts[pts[i]] == 1 and pts[i] in packet_keys]
    order = DecodeOrder(pts=tuple(pts), seek_points=tuple(seek_points))
    if key is not None:
        _cache[key] = order
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return order


class DecodeOrderReading:
    """Reading in decode order, for ``PyAVReader`` (which provides the container, the
    stream, ``_reopen``, ``_prime_decoder``, ``_to_tensor`` and ``_key_pts``)."""

    def _scan_decode_order(self) -> None:
        def open_stream():
            self._reopen()
            return opening.pictures(self._container, self._stream), lambda: None

        try:
            self._order = scan(self.path, open_stream, self._key_pts)
        except av.FFmpegError as err:
            self.close()
            raise VideoDecodeError(f"{self.path}: cannot decode ({short(err)})") from None
        if self._order.num_frames == 0:
            self.close()
            raise VideoDecodeError(f"{self.path}: video stream has no frames that decode")
        self.order = "decode"
        self.damaged_frame = None  # the scan decoded every frame there is
        self._pts = None
        self._key_index = [i for i, _ in self._order.seek_points]
        self._seek_index = {p: i for i, p in self._order.seek_points if i > 0}
        self._skips.enabled = False
        self._frames = None

    def _start_in_decode_order(self, index: int, pts: int | None) -> None:
        """Decode from frame ``index``: a fresh open for the start, else a seek to its keyframe."""
        if pts is None:
            self._reopen()
            self._next_index = 0
        else:
            self._prime_decoder()
            try:
                self._container.seek(pts, stream=self._stream, backward=True, any_frame=False)
            except av.FFmpegError:
                return self._start_in_decode_order(0, None)
            self._next_index = None  # until a keyframe the scan knows comes out
        self._frames = opening.pictures(self._container, self._stream)

    def _read_in_decode_order(self, indices: list[int], size) -> dict[int, torch.Tensor]:
        """Frame i is the i-th frame of a sequential decode: seek to a known keyframe, count."""
        out: dict[int, torch.Tensor] = {}
        wanted = set(indices)
        for target in indices:
            if target in out:
                continue
            start, pts = self._order.start_for(target)
            live = self._frames is not None and self._next_index is not None and self._next_index <= target
            if not (live and start - self._next_index <= SEEK_MIN_GAP):
                self._start_in_decode_order(start, pts)
            if not self._count_until(target, wanted, out, size):
                self._start_in_decode_order(0, None)  # from the start it is exact by definition
                if not self._count_until(target, wanted, out, size):
                    raise VideoDecodeError(f"{self.path}: decoding is not repeatable at frame {target}: "
                                           "frames cannot be read exactly")
        return out

    def _count_until(self, target: int, wanted: set[int], out: dict, size) -> bool:
        """Decode and count up to ``target``; False when the frames disagree with the scan."""
        waited = 0
        for frame in self._frames:
            if self._next_index is None:  # after a seek: frames before the keyframe are not counted
                index = self._seek_index.get(frame.pts) if frame.key_frame else None
                if index is None:
                    waited += 1
                    if waited > SYNC_LIMIT:
                        return False
                    continue
                if index > target:
                    return False
                self._next_index = index
            index = self._next_index
            if index >= self._order.num_frames or frame.pts != self._order.pts[index]:
                self._frames = None
                return False
            self._next_index = index + 1
            if index in wanted and index not in out:
                out[index] = self._to_tensor(frame, size)
            if index >= target:
                return True
        self._frames = None
        if self._next_index is None:
            return False
        raise VideoDecodeError(f"{self.path}: frame {target} could not be decoded (file truncated?)")

