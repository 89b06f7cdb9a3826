"""Probing for ``mlfo data scan`` at dataset scale: what it decodes, what it still catches,
and how it runs (every core by default, a progress bar with rate and problems)."""

from __future__ import annotations

import multiprocessing
import sys
from pathlib import Path

import av

sys.path.insert(0, str(Path(__file__).parent))
from videos import read_index, write_indexed_video, write_packed_bframes_avi  # noqa: E402

import mlfo.data.readers.pyav as pyav  # noqa: E402
import mlfo.data.sources.probe as probe  # noqa: E402
from mlfo.cli import main  # noqa: E402
from mlfo.data.readers import open_video  # noqa: E402
from mlfo.data.sources import load_index, probe_video  # noqa: E402


def faststart_copy(source: Path, out: Path) -> Path:
    """The same packets in an mp4 whose index (moov) precedes the data, as streamed files have."""
    with av.open(str(source)) as src, av.open(str(out), "w", options={"movflags": "faststart"}) as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)
    return out


def packets(path: Path) -> list[tuple[int, int]]:
    with av.open(str(path)) as container:
        return [(p.pos, p.size) for p in container.demux(video=0) if p.size]


def test_probe_decodes_one_picture_not_the_last_gop(tmp_path, monkeypatch):
    """A 300-frame, 250-frame-GOP file: the earlier probe decoded frames 250-299 to reach the last."""
    path = write_indexed_video(tmp_path / "long.mp4", 300, gop=250, bframes=2)
    alone, runs = [], []
    real_alone, real_run = pyav.PyAVReader._decodes_alone, pyav._decode_skipping
    monkeypatch.setattr(pyav.PyAVReader, "_decodes_alone", lambda self, i: alone.append(i) or real_alone(self, i))
    monkeypatch.setattr(pyav, "_decode_skipping", lambda *args: runs.append(args) or real_run(*args))
    meta = probe_video(str(path))
    assert (meta["status"], meta["num_frames"]) == ("ok", 300)
    assert alone == [250] and runs == []  # the last keyframe's packet alone; no decoding run


def test_cut_files_are_still_caught(tmp_path):
    full = write_indexed_video(tmp_path / "full.mp4", 60, gop=30, bframes=2)
    streamed = faststart_copy(full, tmp_path / "streamed.mp4").read_bytes()
    (tmp_path / "streamed_cut.mp4").write_bytes(streamed[: int(len(streamed) * 0.9)])
    data = full.read_bytes()
    (tmp_path / "index_cut.mp4").write_bytes(data[: int(len(data) * 0.98)])  # into the index (moov) at the end
    assert probe_video(str(tmp_path / "streamed_cut.mp4"))["status"].startswith("unreadable: decoding failed")
    status = probe_video(str(tmp_path / "index_cut.mp4"))["status"]  # was "empty"
    assert status == "unreadable: the container lists 60 frames but none is readable (file truncated?)"


def test_thorough_decodes_every_frame_and_catches_damage_in_the_middle(tmp_path):
    path = faststart_copy(write_indexed_video(tmp_path / "src.mp4", 60, gop=30, bframes=2), tmp_path / "a.mp4")
    pos, size = packets(path)[10]
    data = bytearray(path.read_bytes())
    data[pos:pos + size] = b"\xff" * size  # one P-frame's data destroyed, in the first GOP's middle
    path.write_bytes(bytes(data))
    assert probe_video(str(path))["status"] == "ok"  # the quick probe does not decode frame 10
    assert probe_video(str(path), thorough=True)["status"].startswith("unreadable: decoding failed")
    index = load_index(tmp_path, cache=False, progress=False, thorough=True)
    assert {Path(r.path).name: r.status.split(":")[0] for r in index.records} == {"a.mp4": "unreadable",
                                                                                  "src.mp4": "ok"}


def test_files_numbered_by_decode_order_probe_ok_with_the_decoded_count(tmp_path):
    write_packed_bframes_avi(tmp_path / "packed.avi", 60, gop=12)
    write_indexed_video(tmp_path / "h264.avi", 45, codec="libx264", bframes=3, gop=12)
    records = {Path(r.path).name: r for r in load_index(tmp_path, cache=False, progress=False).records}
    assert {n: (r.status, r.num_frames) for n, r in records.items()} == {"packed.avi": ("ok", 60),
                                                                         "h264.avi": ("ok", 45)}
    for record in records.values():  # and what the scan accepts reads exactly
        with open_video(record.path) as reader:
            wanted = [record.num_frames - 1, 5, 6, 30]
            assert [read_index(f) for f in reader.get_frames(wanted)] == wanted


def test_probing_defaults_to_every_available_core(tmp_path, monkeypatch):
    first = write_indexed_video(tmp_path / "v00.mp4", 8)
    for i in range(1, 40):
        (tmp_path / f"v{i:02d}.mp4").write_bytes(first.read_bytes())
    sizes = []
    real_context = multiprocessing.get_context

    class Spy:
        def __init__(self, method):
            self.context = real_context(method)

        def Pool(self, processes):  # noqa: N802 - multiprocessing's name
            sizes.append(processes)
            return self.context.Pool(processes)

    monkeypatch.setattr(probe.multiprocessing, "get_context", Spy)
    monkeypatch.setattr(probe, "available_cores", lambda: 3)
    index = load_index(tmp_path, cache=False, progress=False)
    assert sizes == [3] and len(index.records) == 40 and all(r.status == "ok" for r in index.records)


def test_progress_bar_shows_rate_time_left_and_problems(tmp_path, capsys):
    first = write_indexed_video(tmp_path / "v00.mp4", 8)
    for i in range(1, 20):
        (tmp_path / f"v{i:02d}.mp4").write_bytes(first.read_bytes())
    (tmp_path / "bad.mp4").write_text("not a video")
    load_index(tmp_path, cache=False, progress=True, workers=2)
    bar = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert bar.startswith("mlfo: probing videos: 100%") and "21/21" in bar, bar
    assert "video/s" in bar and "<00:00" in bar and "1 problem" in bar, bar


def test_scan_cli_workers_must_be_positive(tmp_path, capsys):
    write_indexed_video(tmp_path / "a.mp4", 8)
    assert main(["data", "scan", str(tmp_path), "--workers", "0"]) == 2
    assert capsys.readouterr().err.strip() == "mlfo: error: --workers: must be at least 1, got 0"
