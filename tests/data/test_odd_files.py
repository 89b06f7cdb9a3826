"""Files a dataset folder can hold that once crashed, hung or littered: MPEG program streams
and FLV (a segfault while opening), a FIFO named like a video (a scan that never ends),
a file name that is not UTF-8 (a traceback and a temp file left beside the data), and a
stream whose first packet tells the decoder how to decode the rest (wrong pictures after a seek)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from videos import write_indexed_video  # noqa: E402

from mlfo.data.sources import cache as index_cache  # noqa: E402
from mlfo.data.sources import load_index  # noqa: E402
from mlfo.data.sources.records import VideoRecord  # noqa: E402

READ_IN_CHILD = """
import sys
sys.path.insert(0, {tests!r})
from videos import read_index
from mlfo.data.readers import open_video
with open_video(sys.argv[1]) as reader:
    indices = [reader.num_frames - 1, 0, 7, 3]
    print(reader.num_frames, [read_index(f) for f in reader.get_frames(indices)] == indices)
"""


@pytest.mark.parametrize("name, codec", [("ps2.vob", "mpeg2video"), ("ps1.mpg", "mpeg1video"), ("clip.flv", "flv")])
def test_containers_without_stream_headers_open_without_a_crash(tmp_path, name, codec):
    """Their streams appear only while FFmpeg probes: PyAV 16 with stream options segfaulted."""
    path = write_indexed_video(tmp_path / name, 24, codec=codec, size=(64, 48))
    code = READ_IN_CHILD.format(tests=os.path.dirname(__file__))
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (done.returncode, done.stderr[-500:])  # -11: the segfault
    assert done.stdout.split() == ["24", "True"], done.stdout


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_a_fifo_named_like_a_video_is_reported_not_opened(tmp_path):
    root = tmp_path / "clips"
    root.mkdir()
    write_indexed_video(root / "good.mp4", 40, size=(32, 24))
    os.mkfifo(root / "pipe.mp4")
    done = subprocess.run([sys.executable, "-m", "mlfo.cli", "data", "scan", str(root), "--quiet", "--no-cache"],
                          capture_output=True, text=True, timeout=120)  # before: blocked in open() forever
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if "pipe.mp4" in line]
    assert lines == [f"  {root / 'pipe.mp4'}: unreadable: a FIFO, not a video file (not opened)"], done.stdout
    assert "usable: 1 " in done.stdout


@pytest.mark.skipif(sys.platform in ("darwin", "win32"), reason="the file system there keeps names in Unicode")
def test_a_file_name_that_is_not_utf8_is_reported_and_nothing_is_left_behind(tmp_path):
    root = tmp_path / "clips"
    root.mkdir()
    write_indexed_video(root / "good.mp4", 40, size=(32, 24))
    bad = os.fsdecode(os.fsencode(str(root)) + b"/caf\xe9.mp4")
    os.rename(write_indexed_video(root / "other.mp4", 40, size=(32, 24)), bad)
    index = load_index(root, progress=False)
    assert [Path(r.path).name for r in index.records] == ["good.mp4"]
    assert index.skipped == [f"{root}/caf\\xe9.mp4: file name is not valid UTF-8 (rename it to use it)"]
    assert sorted(os.listdir(tmp_path)) == ["clips", "clips.mlfo-index.csv"]  # no .tmpPID
    done = subprocess.run([sys.executable, "-m", "mlfo.cli", "data", "scan", str(root), "--quiet"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "caf\\xe9.mp4: file name is not valid UTF-8" in done.stdout, done.stderr


def test_an_index_write_that_fails_midway_leaves_no_temp_file(tmp_path):
    target = tmp_path / "clips.mlfo-index.csv"
    record = VideoRecord(path=str(tmp_path / "a.mp4"), num_frames=1, fps=25.0, width=2, height=2)
    with pytest.raises(KeyError):  # any error, not only OSError: the temp file goes
        index_cache.write_cache(target, [record], {})
    assert os.listdir(tmp_path) == []



def _write_xvid_tagged(path: Path) -> None:
    """MPEG-4 part 2 whose first packet alone carries Xvid's user data ("XviD0050"), as Xvid
    writes it: FFmpeg then decodes with Xvid's IDCT, and a decoder that never saw the first
    packet uses another one (every picture after a seek differs, by a few levels)."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"g": "10", "bf": "0", "qscale": "4"}
        first = True
        for i in range(30):
            frame = av.VideoFrame.from_ndarray(np.roll(base, 2 * i, axis=1), format="rgb24")
            for packet in stream.encode(frame) + (stream.encode() if i == 29 else []):
                if first:
                    tagged = av.Packet(b"\x00\x00\x01\xb2XviD0050" + bytes(packet))
                    tagged.pts, tagged.dts, tagged.time_base = packet.pts, packet.dts, packet.time_base
                    tagged.is_keyframe, tagged.stream, packet, first = True, stream, tagged, False
                container.mux(packet)


def test_a_seek_decodes_as_the_first_packet_says(tmp_path):
    """The decoder sees the stream's first packet before its first seek (readers.opening.prime);
    the same happens with x264's version in H.264 (cockatoo.mp4 in the conformance set)."""
    path = tmp_path / "xvid.mp4"
    _write_xvid_tagged(path)
    with av.open(str(path)) as container:
        truth = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    with av.open(str(path)) as container:  # the case is real: from keyframe 10 alone, other pictures
        packets = [p for p in container.demux(video=0) if p.size][10:]
        alone = [f.to_ndarray(format="rgb24") for p in packets for f in p.decode()]
        assert not np.array_equal(alone[0], truth[10])
    from mlfo.data.readers import open_video

    for i in (10, 15, 20, 29):
        with open_video(path) as reader:
            assert np.array_equal(reader.get_frames([i])[0].numpy(), truth[i]), i
    with open_video(path) as reader:
        frames = reader.get_frames([29, 3, 21, 11])
        assert all(np.array_equal(f.numpy(), truth[i]) for f, i in zip(frames, [29, 3, 21, 11]))
