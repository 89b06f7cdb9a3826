"""``data.decode_device``: GPU decoding (torchcodec) reachable from config, opt-in, and
refused in the combinations that cannot work (issue 17 part 4). Decoding on a GPU itself
is not run here: this machine has none."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from videos import write_indexed_video  # noqa: E402

import mlfo.data.datasets as datasets  # noqa: E402
from mlfo.config import load_config  # noqa: E402
from mlfo.data.readers import open_video  # noqa: E402
from mlfo.data.sources import VideoRecord  # noqa: E402
from mlfo.errors import MLFOError  # noqa: E402
from mlfo.method import MLFOMethod  # noqa: E402

GPU = ["data.backend=torchcodec", "data.decode_device=cuda", "data.num_workers=0", "data.pin_memory=false"]


@pytest.mark.parametrize("drop, words", [
    ("data.backend=torchcodec", "needs data.backend=torchcodec"),
    ("data.num_workers=0", "set data.num_workers=0"),
    ("data.pin_memory=false", "set data.pin_memory=false"),
])
def test_gpu_decoding_refuses_what_cannot_work(drop, words):
    with pytest.raises(MLFOError, match=words):
        load_config("ucf101_r3d18", [o for o in GPU if o != drop])


def test_decode_device_reaches_the_reader_and_stays_off_by_default(tmp_path, monkeypatch):
    path = write_indexed_video(tmp_path / "v.mp4", 40, size=(64, 48))
    opened = []

    def spy(p, backend, **options):  # records the options; reads on the CPU (no GPU here)
        opened.append((backend, options))
        return open_video(p, "pyav")

    monkeypatch.setattr(datasets, "open_video", spy)
    records = [VideoRecord(str(path), 40, 25.0, 64, 48)]
    for overrides, expected in (([], ("auto", {})), (GPU, ("torchcodec", {"device": "cuda"}))):
        cfg = load_config("ucf101_r3d18", overrides + ["data.clip_len=8", "data.crop_size=16"])
        MLFOMethod.train_dataset(type("M", (), {"cfg": cfg})(), records)[(0, 0)]
        assert opened[-1] == expected
