"""Frame-exact decoding of real footage: the hard case of DivX-style packed B-frames.

``Force_constante.avi`` and ``Principe_inertie.avi`` (pymecavideo 8.0rc11 on PyPI) are Xvid
with packed B-frames (6-byte placeholder packets, decoded timestamps 1, 3, 2, 5, 4, ...),
which a timestamp index reads wrongly: every frame is checked, alone on a fresh reader and
walking backwards on one reader. The clips come from ``footage.py`` (pinned, sha256-checked,
skipped with the reason when offline); ``test_conformance.py`` checks all the real files.
"""

from __future__ import annotations

import hashlib
import os
import sys

import av
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from footage import clip  # noqa: E402

from mlfo.data.readers import open_video  # noqa: E402

pytestmark = pytest.mark.network

PACKED = [("pymecavideo-8.0rc11", "Force_constante.avi"), ("pymecavideo-8.0rc11", "Principe_inertie.avi")]


def _hash(array) -> str:
    return hashlib.blake2b(array.tobytes(), digest_size=16).hexdigest()


def _sequential_hashes(path) -> list[str]:
    """Every frame, decoded start to end without seeking: the ground truth."""
    with av.open(str(path)) as container:
        return [_hash(frame.to_ndarray(format="rgb24")) for frame in container.decode(video=0)]


@pytest.mark.parametrize("source, name", PACKED)
def test_packed_bframes_clips_frame_by_frame(source, name):
    """Each frame alone, from a fresh reader and from one reader walking backwards."""
    path = clip(source, name)
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
