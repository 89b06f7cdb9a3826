"""Tiny lossless frame-folder videos and UCF101-format split files for the eval tests."""

from pathlib import Path

import numpy as np
from PIL import Image

H, W = 32, 48  # frames wider than tall: "three" crops slide along x


def write_frames(folder: Path, num_frames: int, offset: int = 0) -> Path:
    """PNG frames (lossless) whose grey value is 5 * (t + offset) + 2 * x: the mean of a
    clip tells which frames it holds, the mean of a crop where it sits."""
    folder.mkdir(parents=True)
    x = np.arange(W)[None, :].repeat(H, 0)
    for t in range(num_frames):
        grey = np.clip(5 * (t + offset) + 2 * x, 0, 255).astype(np.uint8)
        Image.fromarray(np.stack([grey] * 3, axis=-1)).save(folder / f"image_{t + 1:05d}.png")
    return folder


def ucf_fixture(tmp_path):
    root, splits = tmp_path / "UCF101", tmp_path / "ucfTrainTestlist"
    splits.mkdir()
    classes = ["ApplyEyeMakeup", "Biking"]
    (splits / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(classes)))
    for s in (1, 2, 3):
        train, test = [], []
        for c in classes:
            for g in (1, 2, 3):
                name = f"{c}/v_{c}_g0{g}_c01.avi"
                (test if g == s else train).append(name)
        (splits / f"trainlist0{s}.txt").write_text("".join(f"{n} {classes.index(n.split('/')[0]) + 1}\n" for n in train))
        (splits / f"testlist0{s}.txt").write_text("".join(f"{n}\n" for n in test))
    for ci, c in enumerate(classes):
        for g in (1, 2, 3):
            write_frames(root / c / f"v_{c}_g0{g}_c01", 10, offset=ci * 10 + g)
    return root, splits


def csv_dataset(root: Path, n_train: int = 5, n_test: int = 3, frames: int = 8) -> Path:
    """A folder with train.csv and test.csv over frame-folder videos of two classes."""
    rows = {"train": [], "test": []}
    for subset, n in (("train", n_train), ("test", n_test)):
        for k in range(n):
            name = f"{subset}_{k}"
            write_frames(root / "videos" / name, frames, offset=7 * k + (subset == "test"))
            rows[subset].append(f"videos/{name},{'ab'[k % 2]}\n")
    for subset, lines in rows.items():
        (root / f"{subset}.csv").write_text("path,label\n" + "".join(lines))
    return root


class ShardSpy:
    """Stops the next sharded extraction (Ctrl-C) right after its first shard is on disk
    (``interrupt``), then records the items the next one computes (``record``)."""

    def __init__(self, monkeypatch):
        import mlfo.eval.shards as shards

        self.shards, self.monkeypatch = shards, monkeypatch
        self.real_save, self.real_iter = shards.save_shard, shards.iter_features
        self.saved: list[Path] = []
        self.computed: list[int] = []

    def interrupt(self) -> None:
        def save_then_interrupt(path, *args, **kwargs):
            self.real_save(path, *args, **kwargs)
            self.saved.append(path)
            raise KeyboardInterrupt

        self.monkeypatch.setattr(self.shards, "save_shard", save_then_interrupt)

    def record(self) -> None:
        def recording_iter(*args, indices, **kwargs):
            self.computed.extend(indices)
            return self.real_iter(*args, indices=indices, **kwargs)

        self.monkeypatch.setattr(self.shards, "save_shard", self.real_save)
        self.monkeypatch.setattr(self.shards, "iter_features", recording_iter)
