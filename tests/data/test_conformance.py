"""Frame-exact conformance over real footage from PyPI, Debian and npm packages (``footage.py``).

Each file is checked in its own process (``frame_exact.py``), two at a time: random access
through ``open_video`` must give, at every keyframe, next to it and at random frames, the
very picture a sequential decode gives, and ``mlfo data scan`` must agree on the frame
count, or the scan must refuse the file in one line. A crash in a decoder fails that file.

The set (36 files, 9 codecs, 11 container/codec pairs): H.264 in mp4 (Baseline to High
4:4:4 Predictive, with and without B-frames) and in MPEG transport streams, MPEG-4 part 2 in AVI (Xvid, DivX packed
B-frames), MS-MPEG-4 v3 and Cinepak in AVI, Theora in Ogg (one with a cropped picture and
"picture unchanged" packets), VP8 in WebM, VP9 in AVI, MPEG-1 and MPEG-2 program streams and
an MPEG-1 elementary stream; one transport-stream packet without a picture, refused.
No HEVC or MJPEG file was found in the registries' packages.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from footage import CLIPS, clip  # noqa: E402

from mlfo.data.readers import open_video  # noqa: E402

pytestmark = pytest.mark.network

CHILD = Path(__file__).with_name("frame_exact.py")
# (source, clip) -> the start of its scan status. One 188-byte transport-stream packet of
# PES stuffing, a demuxer test, holds no picture.
EXPECTED_REFUSED = {("mux.js-7.1.0", "test-stuffed-pes.ts"): "unreadable: not a readable video"}


def _fetch_all() -> dict[tuple[str, str], Path | str]:
    found = {}
    for source, name in CLIPS:
        try:
            found[source, name] = clip(source, name)
        except pytest.skip.Exception as skipped:
            found[source, name] = str(skipped)
    return found


def _run_child(path: Path) -> dict:
    try:
        done = subprocess.run([sys.executable, str(CHILD), str(path)], capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return {"result": "timed out after 300 s"}
    if done.returncode != 0:
        return {"result": f"child exited {done.returncode}", "stderr": done.stderr.strip().splitlines()[-3:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def results() -> dict[tuple[str, str], dict | str]:
    """Every clip's result (or why it was skipped); the children run two at a time."""
    found = _fetch_all()
    paths = {key: p for key, p in found.items() if isinstance(p, Path)}
    with ThreadPoolExecutor(2) as pool:
        done = dict(zip(paths, pool.map(_run_child, paths.values())))
    return {key: done.get(key, found[key]) for key in found}


@pytest.mark.parametrize("source, name", CLIPS)
def test_real_file_is_frame_exact_or_refused_in_one_line(results, source, name):
    result = results[source, name]
    if isinstance(result, str):
        pytest.skip(result)
    if (source, name) in EXPECTED_REFUSED:
        assert result["result"] == "refused" and result["status"].startswith(EXPECTED_REFUSED[source, name])
        assert "\n" not in result["status"]
    else:
        assert result["result"] == "exact", (name, result)


def test_the_set_covers_nine_codecs_in_eleven_pairs_and_the_mpeg_streams(results):
    fetched = [clip(s, n) for (s, n), r in results.items() if not isinstance(r, str)]
    if len(fetched) < len(results):
        pytest.skip(next(r for r in results.values() if isinstance(r, str)))
    kinds = set()
    for path in fetched:
        if (path.parent.name, path.name) in EXPECTED_REFUSED:
            continue
        with av.open(str(path)) as container:
            kinds.add((container.format.name, container.streams.video[0].codec_context.name))
    codecs = {codec for _, codec in kinds}
    assert len(fetched) - len(EXPECTED_REFUSED) >= 35 and len(kinds) >= 11 and len(codecs) >= 9, sorted(kinds)
    assert {("mpeg", "mpeg1video"), ("mpeg", "mpeg2video"), ("avi", "cinepak"), ("avi", "msmpeg4"),
            ("mpegts", "h264")} <= kinds


def _ogg_crc(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7 if crc & 0x80000000 else crc << 1) & 0xFFFFFFFF
    return crc


def test_theora_picture_at_an_offset_is_cut_exactly(tmp_path):
    """The header of a real Theora clip set to a 390-wide picture at x = 4 (the case of a
    224-coded, 214-wide picture): FFmpeg's aligned crop is 394 wide; scaling it to 390
    distorted every frame. The picture must be columns 4..393 of the coded frame."""
    original = clip("pymecavideo-8.0rc11", "Effet_force_magnetique.ogv")
    data = bytearray(original.read_bytes())
    info = data.find(b"\x80theora") + 7  # the identification header, alone on the first Ogg page
    assert int.from_bytes(data[info + 7:info + 10], "big") == 400 and data[info + 13] == 0
    data[info + 7:info + 10], data[info + 13] = (390).to_bytes(3, "big"), 4
    page_end = 27 + data[26] + sum(data[27:27 + data[26]])
    data[22:26] = bytes(4)
    data[22:26] = _ogg_crc(bytes(data[:page_end])).to_bytes(4, "little")
    cropped = tmp_path / "cropped.ogv"
    cropped.write_bytes(bytes(data))
    with av.open(str(original)) as container:
        full = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    with open_video(cropped) as reader:
        assert (reader.width, reader.height, reader.num_frames) == (390, 304, len(full))
        indices = [len(full) - 1, 0, len(full) // 2]
        for i, frame in zip(indices, reader.get_frames(indices)):
            assert np.array_equal(frame.numpy(), full[i][:, 4:394]), i
