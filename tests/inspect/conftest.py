"""A handful of tiny videos and a tiny encoder file for the ``mlfo inspect`` tests."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # browser.py


@pytest.fixture(scope="session")
def tiny_videos(tmp_path_factory) -> Path:
    """An unlabelled folder of 13 demo videos (20 frames of 48x48), one an exact copy of
    another (``dup_of_first.mp4``), and ``outside.mp4``, a copy kept outside the folder."""
    from mlfo.data.demo import generate_demo_dataset

    root = tmp_path_factory.mktemp("inspect_data")
    generate_demo_dataset(root / "demo", seed=0, videos_per_class=2, num_frames=20, height=48, width=48,
                          classes=["move_up", "move_down", "rotate", "ring", "cross", "triangle"], workers=1)
    videos = sorted((root / "demo" / "videos").glob("*.mp4"))
    folder = root / "folder"
    folder.mkdir()
    for v in videos:
        shutil.copy(v, folder / v.name)
    shutil.copy(videos[0], folder / "dup_of_first.mp4")
    shutil.copy(videos[1], root / "outside.mp4")
    return root


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> Path:
    """A narrow r3d_small (seeded, untrained) saved as an encoder file."""
    from mlfo.models import build_backbone

    torch.manual_seed(7)
    backbone = build_backbone("r3d_small", widths=[8, 16, 16, 32])
    path = tmp_path_factory.mktemp("encoder") / "tiny.pt"
    torch.save({"arch": backbone.arch, "state_dict": backbone.state_dict()}, path)
    return path
