"""Frame-exact decoding: every requested index returns that very frame.

The videos draw their own index as a bar code (tests/data/videos.py). Each file exercises
one way readers are known to go wrong: B-frame reordering, MPEG-4 .avi timestamps that
start at 1 (a plain seek lands one frame early), a VP9 webm, a 250-frame GOP (seeks land
far before the target), variable frame rate (index != time * fps), an mp4 edit list that
hides decoded frames, a raw stream with no timestamps at all, and two AVI files whose
decoded timestamps come out of order: DivX-style packed B-frames and H.264 with B-frames.
"""

from __future__ import annotations

import gc
import random
import sys
import weakref
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from videos import (  # noqa: E402
    index_image, read_index, trim_mp4_start, write_empty_video, write_indexed_video, write_packed_bframes_avi, write_video,
)

import mlfo.data.readers.decode_order as decode_order  # noqa: E402
from mlfo.data.readers import open_video  # noqa: E402
from mlfo.data.readers.frames import FrameFolderReader  # noqa: E402
from mlfo.data.readers.pyav import PyAVReader  # noqa: E402
from mlfo.data.sources import probe_video  # noqa: E402
from mlfo.errors import MLFOError, VideoDecodeError  # noqa: E402

try:
    from mlfo.data.readers.torchcodec import IMPORT_ERROR, torchcodec_available
except ImportError as err:  # the module itself is optional
    IMPORT_ERROR, torchcodec_available = str(err), (lambda: False)

EDIT_LIST_HIDDEN = 5
VFR_PTS = [i * i // 3 + 7 * i for i in range(80)]  # ms, gaps grow from 7 ms to 60 ms

# name -> (write kwargs, expected number of frames, index drawn on frame 0)
CASES = {
    "h264_bframes.mp4": (dict(num_frames=90, codec="libx264", bframes=3, gop=12), 90, 0),
    "xvid.avi": (dict(num_frames=90, codec="mpeg4", bframes=2, gop=12), 90, 0),
    "vp9.webm": (dict(num_frames=60, codec="libvpx-vp9", gop=15), 60, 0),
    "long_gop.mp4": (dict(num_frames=300, codec="libx264", bframes=2, gop=250), 300, 0),
    "vfr.mp4": (dict(num_frames=80, codec="libx264", bframes=2, gop=10, pts=VFR_PTS,
                     time_base=Fraction(1, 1000)), 80, 0),
    "edit_list.mp4": (None, 90 - EDIT_LIST_HIDDEN, EDIT_LIST_HIDDEN),
    "raw_no_timestamps.h264": (dict(num_frames=40, codec="libx264", bframes=2, gop=10), 40, 0),
    "raw_mpeg4.m4v": (dict(num_frames=50, codec="mpeg4", bframes=2, gop=10), 50, 0),  # no seek index
    "packed_bframes.avi": (None, 60, 0),  # videos.write_packed_bframes_avi, a keyframe every 12
    "h264_in_avi.avi": (dict(num_frames=60, codec="libx264", bframes=3, gop=12), 60, 0),  # AVI: no pts
}


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("indexed_videos")
    for name, (kwargs, _, _) in CASES.items():
        if kwargs is None or kwargs["codec"] not in av.codecs_available:
            continue
        write_indexed_video(folder / name, **kwargs)
    trim_mp4_start(folder / "h264_bframes.mp4", folder / "edit_list.mp4", EDIT_LIST_HIDDEN)
    write_packed_bframes_avi(folder / "packed_bframes.avi", 60, gop=12)
    return folder


def _backend_or_skip(backend: str) -> None:
    if backend == "torchcodec" and not torchcodec_available():
        pytest.skip(f"torchcodec not importable here: {IMPORT_ERROR}")


def _index_sets(num_frames: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    last = num_frames - 1
    sets = [
        [0],
        [last],
        list(range(num_frames)),  # every frame, sequentially
        list(range(last, -1, -7)),  # backwards: a seek for each
        [3, 3, 3, last, 0, 3],  # repeats and jumps
        sorted(rng.sample(range(num_frames), min(16, num_frames))),
    ]
    for _ in range(6):
        sets.append([rng.randrange(num_frames) for _ in range(rng.randint(1, 12))])  # unsorted
    # A clip-like request: a strided run starting at a random frame, as the sampler asks.
    start = rng.randrange(max(1, num_frames - 32))
    sets.append(list(range(start, min(num_frames, start + 32), 2)))
    return sets


@pytest.mark.parametrize("backend", ["pyav", "torchcodec"])
@pytest.mark.parametrize("name", list(CASES))
def test_every_requested_index_returns_that_frame(video_dir, name, backend):
    _backend_or_skip(backend)
    path = video_dir / name
    if not path.exists():
        pytest.skip(f"codec {CASES[name][0]['codec']} not in PyAV's bundled FFmpeg")
    _, expected_frames, first_code = CASES[name]
    with open_video(path, backend=backend) as reader:
        assert reader.num_frames == expected_frames
        assert (reader.width, reader.height) == (64, 48)
        assert reader.fps > 0
        for indices in _index_sets(reader.num_frames, seed=len(name)):
            frames = reader.get_frames(indices)
            assert frames.dtype == torch.uint8 and frames.shape == (len(indices), 48, 64, 3)
            assert [read_index(f) - first_code for f in frames] == indices, (name, indices)


def test_fixtures_have_the_properties_that_break_naive_readers(video_dir):
    """Guards the test above: each file really carries the trap it is named after."""

    def packets(name):
        with av.open(str(video_dir / name)) as container:
            stream = container.streams.video[0]
            return [p for p in container.demux(stream) if p.size], stream.average_rate

    avi, _ = packets("xvid.avi")
    assert min(p.pts for p in avi) == 1  # frame 0 at t = 1/fps: time-based indexing is one off
    edit, _ = packets("edit_list.mp4")
    assert sum(p.is_discard for p in edit) >= EDIT_LIST_HIDDEN
    vfr, _ = packets("vfr.mp4")
    gaps = np.diff(sorted(p.pts for p in vfr))
    assert gaps.min() * 3 < gaps.max()
    long_gop, _ = packets("long_gop.mp4")
    assert sum(p.is_keyframe for p in long_gop) <= 2
    raw, _ = packets("raw_no_timestamps.h264")
    assert all(p.pts is None for p in raw)
    with av.open(str(video_dir / "edit_list.mp4")) as container:
        assert container.streams.video[0].frames == 90  # the container's count is not the frame count
    packed, _ = packets("packed_bframes.avi")
    assert sum(p.size <= 8 for p in packed) >= 20  # the placeholder packets of packed B-frames
    assert sum(p.is_keyframe for p in packed) >= 4
    for name in ("packed_bframes.avi", "h264_in_avi.avi"):  # timestamps a sorted index misreads
        with av.open(str(video_dir / name)) as container:
            stamps = [frame.pts for frame in container.decode(video=0)]
        assert len(set(stamps)) == len(stamps) and stamps != sorted(stamps), name


def test_decode_order_is_used_only_where_timestamps_cannot_name_frames(video_dir):
    expected = {"packed_bframes.avi": "decode", "h264_in_avi.avi": "decode", "raw_no_timestamps.h264": "decode"}
    for name in CASES:
        if (video_dir / name).exists():
            with open_video(video_dir / name) as reader:
                assert reader.order == expected.get(name, "timestamps"), name


def test_packed_bframes_seek_from_keyframes_not_only_from_the_start(video_dir, monkeypatch):
    with open_video(video_dir / "packed_bframes.avi") as reader:
        starts = []
        real = reader._start_in_decode_order
        monkeypatch.setattr(reader, "_start_in_decode_order", lambda i, pts: starts.append(i) or real(i, pts))
        assert [read_index(f) for f in reader.get_frames([50, 27])] == [50, 27]
        assert len(reader.keyframes) >= 4 and starts and min(starts) > 0, (reader.keyframes, starts)


def test_timestamps_that_disagree_with_the_decoder_switch_to_decode_order(video_dir, monkeypatch):
    """If detection misses a file, the first out-of-order timestamp read gives it away."""
    monkeypatch.setattr(PyAVReader, "_needs_decode_order", lambda self, *args: "")
    for name in ("packed_bframes.avi", "h264_in_avi.avi"):
        with open_video(video_dir / name) as reader:
            assert reader.order == "timestamps"
            assert [read_index(f) for f in reader.get_frames(range(20))] == list(range(20))
            assert reader.order == "decode"
            for i in random.Random(name).sample(range(reader.num_frames), 15):
                assert read_index(reader.get_frames([i])[0]) == i
        assert probe_video(str(video_dir / name))["status"] == "ok"  # the scan's order check finds it


def test_a_file_that_cannot_be_read_exactly_is_an_error_and_scan_reports_it(video_dir, monkeypatch):
    path = video_dir / "packed_bframes.avi"
    monkeypatch.setattr(PyAVReader, "_needs_decode_order", lambda self, *args: "")
    real_scan = decode_order.scan

    def short_scan(*args):  # a sequential decode that disagrees with the packet count
        order = real_scan(*args)
        return decode_order.DecodeOrder(pts=order.pts[:-1], seek_points=order.seek_points)

    monkeypatch.setattr(decode_order, "scan", short_scan)
    with pytest.raises(VideoDecodeError) as err:
        open_video(path).get_frames(range(20))
    _one_line_naming(err, path, "frames cannot be read exactly")
    status = probe_video(str(path))["status"]
    assert status.startswith("unreadable:") and "cannot be read exactly" in status


def test_color_is_rgb(tmp_path):
    """Channels come out in RGB order, not BGR or YUV."""
    path = tmp_path / "red.mp4"
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 220
    write_video(path, [red] * 3)
    with open_video(path) as reader:
        pixel = reader.get_frames([1])[0, 16, 16].tolist()
    assert pixel[0] > 180 and pixel[1] < 40 and pixel[2] < 40


# -- frame folders --------------------------------------------------------------------------


@pytest.mark.parametrize("pattern", ["image_{:05d}.jpg", "img_{:05d}.jpg", "frame{:06d}.png", "{}.png"])
def test_frame_folder_returns_requested_frames(tmp_path, pattern):
    folder = tmp_path / "v_clip"
    folder.mkdir()
    start = 0 if pattern.startswith("frame") else 1
    for i in range(25):  # unpadded "{}.png": 10.png must come after 9.png
        Image.fromarray(index_image(i)).save(folder / pattern.format(i + start), quality=95)
    (folder / "notes.txt").write_text("not a frame")
    with open_video(folder) as reader:  # auto picks the frame backend for a directory
        assert isinstance(reader, FrameFolderReader)
        assert (reader.num_frames, reader.width, reader.height) == (25, 64, 48)
        indices = [24, 0, 9, 10, 10, 3]
        assert [read_index(f) for f in reader.get_frames(indices)] == indices


# -- bad input: one line naming the file --------------------------------------------------


def _truncated(source: Path, out: Path, keep: float) -> Path:
    data = source.read_bytes()
    out.write_bytes(data[: int(len(data) * keep)])
    return out


def _audio_only(path: Path) -> Path:
    container = av.open(str(path), "w")
    stream = container.add_stream("pcm_s16le", rate=8000)
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
    frame.sample_rate = 8000
    for packet in stream.encode(frame):
        container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def _one_line_naming(err: pytest.ExceptionInfo, path: Path, words: str) -> None:
    message = str(err.value)
    assert "\n" not in message
    assert str(path) in message
    assert words in message, message


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda d: d / "missing.mp4", "not found"),
        (lambda d: (d / "notes.mp4").write_text("hello, not a video") and d / "notes.mp4", "not a readable video"),
        (lambda d: _audio_only(d / "sound.wav"), "no video stream"),
        (lambda d: write_empty_video(d / "empty.avi"), "no frames"),
        (lambda d: _truncated(write_indexed_video(d / "full.mp4", 30), d / "cut.mp4", 0.5), "not a readable video"),
        (lambda d: (d / "no_frames").mkdir() or d / "no_frames", "no image files"),
    ],
    ids=["missing", "not-a-video", "audio-only", "zero-frames", "truncated-mp4", "empty-frame-folder"],
)
def test_bad_files_raise_one_line_decode_error(tmp_path, make, words):
    path = make(tmp_path)
    with pytest.raises(VideoDecodeError) as err:
        open_video(path)
    _one_line_naming(err, path, words)


def test_truncated_avi_reads_what_is_there_or_fails_cleanly(tmp_path):
    """An .avi cut short still indexes its readable part; nothing raises a non-mlfo error."""
    path = _truncated(write_indexed_video(tmp_path / "full.avi", 60, codec="mpeg4"), tmp_path / "cut.avi", 0.6)
    try:
        reader = open_video(path)
    except VideoDecodeError as err:
        assert "\n" not in str(err) and str(path) in str(err)
        return
    assert 0 < reader.num_frames < 60
    readable = reader.num_frames - 2  # the frame at the cut may be damaged; those before are intact
    assert [read_index(f) for f in reader.get_frames(range(readable))] == list(range(readable))
    try:
        reader.get_frames([reader.num_frames - 1])
    except VideoDecodeError as err:
        assert "\n" not in str(err) and str(path) in str(err)


def test_unreadable_frame_image_names_the_image(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    Image.fromarray(index_image(0)).save(folder / "image_00001.jpg")
    (folder / "image_00002.jpg").write_bytes(b"\xff\xd8 broken jpeg")
    reader = open_video(folder)
    with pytest.raises(VideoDecodeError) as err:
        reader.get_frames([1])
    _one_line_naming(err, folder / "image_00002.jpg", "cannot read frame image")


def test_out_of_range_index_is_a_clear_error(tmp_path):
    path = write_indexed_video(tmp_path / "short.mp4", 10)
    with open_video(path) as reader:
        for bad in (10, -1):
            with pytest.raises(VideoDecodeError) as err:
                reader.get_frames([0, bad])
            _one_line_naming(err, path, f"frame index {bad} out of range (video has 10 frames)")


def test_unknown_backend_is_a_user_error(tmp_path):
    with pytest.raises(MLFOError, match="backend: unknown video backend 'decord'"):
        open_video(tmp_path / "x.mp4", backend="decord")


def test_torchcodec_falls_back_where_it_is_known_wrong(video_dir):
    _backend_or_skip("torchcodec")
    with open_video(video_dir / "xvid.avi", backend="torchcodec") as reader:
        assert "AVI" in reader.fallback_reason
    with open_video(video_dir / "edit_list.mp4", backend="torchcodec") as reader:
        assert "edit list" in reader.fallback_reason
    with open_video(video_dir / "h264_bframes.mp4", backend="torchcodec") as reader:
        assert reader.fallback_reason == ""


@pytest.mark.parametrize("name", ["long_gop.mp4", "packed_bframes.avi"])
def test_an_unclosed_reader_is_freed_at_once(video_dir, name):
    """No reference cycle: a reader dropped without close() frees its decoder (and threads)
    now, not at a later garbage collection that may run in a forked DataLoader worker,
    where freeing the parent's decoder threads deadlocks."""
    gc.disable()
    try:
        reader = open_video(video_dir / name)
        reader.get_frames([3, reader.num_frames - 1])
        ref = weakref.ref(reader)
        del reader
        assert ref() is None
    finally:
        gc.enable()
