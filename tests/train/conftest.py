"""Fixtures of the training tests (helpers in train_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """train.csv of 22 synthetic videos (11 classes x 2), 20 frames of 48x48."""
    from mlfo.data.demo import generate_demo_dataset

    out = tmp_path_factory.mktemp("tiny_demo")
    generate_demo_dataset(out, seed=0, videos_per_class=3, num_frames=20, height=48, width=48, workers=1)
    return out / "train.csv"
