"""Frame-exact random access to video files with PyAV.

Container metadata and "seek then take the next frame" are both unreliable: an MPEG-4
(xvid) .avi starts its timestamps at 1, an mp4 edit list hides frames the demuxer still
returns, variable-frame-rate files break ``index = time * fps``, and some containers
report a frame count that is only a guess. So the reader first demuxes the video stream
once (no decoding; milliseconds for a short clip) and builds a timestamp index: the
sorted presentation timestamps of every packet that yields a frame. Frame ``i`` *is* the
``i``-th timestamp. To read frames it seeks to the nearest keyframe at or before the first
wanted frame, decodes forward and files every decoded frame under the index of its
timestamp; frames close after the current position are reached by decoding on, not by
seeking again. Streams without timestamps (raw .h264 files) fall back to decode order.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterator
from fractions import Fraction

import av
import torch

from mlfo.data.readers.base import VideoReader
from mlfo.errors import VideoDecodeError

# Seeking costs about as much as decoding a few frames; when the keyframe before the next
# wanted frame is at most this many frames ahead of the decoder, decoding on is cheaper.
SEEK_MIN_GAP = 8


def _short(err: BaseException) -> str:
    """One line describing an exception (FFmpeg errors repeat the file name; drop it)."""
    if isinstance(err, (OSError, av.FFmpegError)) and getattr(err, "strerror", None):  # str() adds errno, path
        return str(err.strerror)
    return str(err).splitlines()[0] if str(err) else type(err).__name__


class PyAVReader(VideoReader):
    """Video file reader; ``threads`` > 1 (or 0 = FFmpeg's choice) enables threaded decoding.

    One thread is the default because data loading already runs one reader per worker
    process; extra decoder threads then only compete for the same cores.
    """

    def __init__(self, path: str | os.PathLike, threads: int = 1):
        self.path = str(path)
        self._threads = threads
        self._container = None
        if not os.path.exists(self.path):
            raise VideoDecodeError(f"{self.path}: file not found")
        if os.path.isdir(self.path):
            raise VideoDecodeError(f"{self.path}: is a directory, not a video file (use backend 'frames')")
        self._open()
        self._build_index()
        if self.num_frames == 0:
            self.close()
            raise VideoDecodeError(f"{self.path}: video stream has no frames")
        stream = self._stream
        self.width = int(stream.codec_context.width)
        self.height = int(stream.codec_context.height)
        if self.width <= 0 or self.height <= 0:
            self.close()
            raise VideoDecodeError(f"{self.path}: video stream has no frame size")
        self.fps = self._frame_rate()

    # -- opening and indexing ------------------------------------------------------------

    def _open(self) -> None:
        try:
            self._container = av.open(self.path, metadata_errors="ignore")
        except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as err:
            raise VideoDecodeError(f"{self.path}: not a readable video ({_short(err)})") from None
        if not self._container.streams.video:
            self.close()
            raise VideoDecodeError(f"{self.path}: no video stream")
        self._stream = self._container.streams.video[0]
        self.container_format = self._container.format.name  # e.g. "avi", "mov,mp4,m4a,3gp,3g2,mj2"
        if self._threads != 1:
            self._stream.thread_type = "AUTO"
            self._stream.thread_count = self._threads
        self._frames: Iterator | None = None  # live decode iterator, or None after EOF/seek
        self._next_index = 0  # index of the frame the live iterator returns next (at least)

    def _build_index(self) -> None:
        """One demux pass: presentation timestamps (sorted) and keyframe positions."""
        pts: list[int] = []
        key_pts: list[int] = []
        count = 0
        discarded = 0
        missing_pts = False
        try:
            for packet in self._container.demux(self._stream):
                if packet.size == 0:  # the flush packet at end of stream
                    continue
                if packet.is_discard:  # before an mp4 edit list's start: decoded, never shown
                    discarded += 1
                    continue
                count += 1
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
        if missing_pts:
            self._pts = None
            self.num_frames = self._count_frames_by_decoding()
            self._key_index = [0]
        else:
            self._pts = sorted(set(pts))
            self._index_of = {p: i for i, p in enumerate(self._pts)}
            # Keyframes as frame indices, sorted; the first frame is always a valid start.
            self._key_index = sorted({0} | {self._index_of[p] for p in key_pts})
            self.num_frames = len(self._pts)
        if self.num_frames:
            self._rewind()

    def _count_frames_by_decoding(self) -> int:
        """Frame count of a stream without timestamps: decoding is the only exact count."""
        self._reopen()
        count = 0
        try:
            for _ in self._container.decode(self._stream):
                count += 1
        except av.FFmpegError as err:
            if count == 0:
                raise VideoDecodeError(f"{self.path}: cannot decode ({_short(err)})") from None
        return count

    def _frame_rate(self) -> float:
        stream = self._stream
        for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
            if rate and float(rate) > 0:
                return float(rate)
        if self._pts is not None and self.num_frames > 1:
            span = (self._pts[-1] - self._pts[0]) * Fraction(stream.time_base)
            if span > 0:
                return float((self.num_frames - 1) / span)
        return 25.0

    # -- positioning -----------------------------------------------------------------------

    def _reopen(self) -> None:
        self._container.close()
        self._open()

    def _rewind(self) -> None:
        """Back to the first frame (a seek when timestamps allow, else a fresh open)."""
        if self._pts is None:
            self._reopen()
        else:
            self._seek_to_frame(0)

    def _seek_to_frame(self, key: int) -> None:
        """Seek so that decoding restarts at the keyframe whose frame index is ``key``."""
        if key == 0:
            target = min(self._pts[0], self._stream.start_time or 0)
        else:
            target = self._pts[key]
        try:
            self._container.seek(target, stream=self._stream, backward=True, any_frame=False)
        except av.FFmpegError:  # an unseekable input (raw streams, pipes): start over instead
            self._reopen()
        self._frames = self._container.decode(self._stream)
        self._next_index = 0  # unknown until a frame arrives; only frames >= key are kept

    def _keyframe_at_or_before(self, index: int) -> int:
        return self._key_index[bisect.bisect_right(self._key_index, index) - 1]

    # -- reading ---------------------------------------------------------------------------

    def _read(self, indices: list[int]) -> dict[int, torch.Tensor]:
        try:
            if self._pts is None:
                return self._read_in_decode_order(indices)
            return self._read_by_timestamp(indices)
        except av.FFmpegError as err:
            self._frames = None
            raise VideoDecodeError(f"{self.path}: decoding failed ({_short(err)})") from None

    def _read_by_timestamp(self, indices: list[int]) -> dict[int, torch.Tensor]:
        out: dict[int, torch.Tensor] = {}
        wanted = set(indices)
        for target in indices:
            if target in out:
                continue
            key = self._keyframe_at_or_before(target)
            live = self._frames is not None and self._next_index <= target
            if live and key - self._next_index <= SEEK_MIN_GAP:
                self._decode_until(target, wanted, out)
                if target in out:
                    continue
            self._decode_after_seek(key, target, wanted, out)
        return out

    def _decode_after_seek(self, key: int, target: int, wanted: set[int], out: dict) -> None:
        """Seek to keyframe ``key`` and decode up to ``target``.

        If the demuxer lands after ``target`` (some demuxers index their seek tables by decode
        time), step back one keyframe at a time; the first frame always works.
        """
        while True:
            self._seek_to_frame(key)
            first = self._decode_until(target, wanted, out, min_index=key)
            if first is not None and first <= target:
                break
            if key == 0:  # even the seek to the start failed: a fresh open starts there
                self._reopen()
                self._frames = self._container.decode(self._stream)
                self._next_index = 0
                self._decode_until(target, wanted, out)
                break
            key = self._keyframe_at_or_before(key - 1)
        if target not in out:
            raise VideoDecodeError(f"{self.path}: frame {target} could not be decoded")

    def _decode_until(self, target: int, wanted: set[int], out: dict, min_index: int = 0) -> int | None:
        """Decode forward until frame ``target`` is in ``out``; keep wanted frames on the way.

        Returns the index of the first frame decoded (at or after ``min_index``), or None
        if the stream ended first. Frames before ``min_index`` follow a seek from before
        the keyframe and may reference pictures the decoder never saw: dropped.
        """
        first = None
        for frame in self._frames:
            index = self._index_of.get(frame.pts)
            if index is None or index < min_index:
                continue
            if first is None:
                first = index
                if index > target:  # landed past the target: the caller seeks further back
                    return first
            self._next_index = index + 1
            if index in wanted and index not in out:
                out[index] = self._to_tensor(frame)
            if index >= target:
                return first
        self._frames = None  # end of stream
        if first is not None and target not in out:
            raise VideoDecodeError(f"{self.path}: frame {target} could not be decoded (file truncated?)")
        return first

    def _read_in_decode_order(self, indices: list[int]) -> dict[int, torch.Tensor]:
        """No timestamps: frame i is the i-th decoded frame, so only forward decoding works."""
        out: dict[int, torch.Tensor] = {}
        if self._frames is None or self._next_index > indices[0]:
            self._reopen()
            self._frames = self._container.decode(self._stream)
            self._next_index = 0
        wanted = set(indices)
        last = indices[-1]
        for frame in self._frames:
            index = self._next_index
            self._next_index += 1
            if index in wanted:
                out[index] = self._to_tensor(frame)
            if index >= last:
                return out
        self._frames = None
        raise VideoDecodeError(f"{self.path}: frame {last} could not be decoded (file truncated?)")

    def _to_tensor(self, frame: av.VideoFrame) -> torch.Tensor:
        if frame.width != self.width or frame.height != self.height:  # mid-stream size change
            array = frame.to_ndarray(format="rgb24", width=self.width, height=self.height)
        else:
            array = frame.to_ndarray(format="rgb24")
        return torch.from_numpy(array)  # (H, W, 3) uint8

    def close(self) -> None:
        container = getattr(self, "_container", None)
        if container is not None:
            self._frames = None
            container.close()
            self._container = None
