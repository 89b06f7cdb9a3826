"""Supervised ceiling of the real-footage benchmark: what labels can teach the same encoder.

An r3d_small trained from scratch with cross-entropy on the train clips of
``real_footage_data.py`` (random 16-frame window, random crop of 50-100 % area, mirror),
tested on the centre window of each test clip. If an encoder trained *with* the labels
cannot tell forward from reversed, no self-supervised encoder of that size can be
expected to: this is the bar the self-supervised rows are read against (docs/results.md).
Prints test top-1 (6-way), direction (2-way) and speed (3-way) accuracy every 100 steps.

    OMP_NUM_THREADS=1 python benchmarks/real_footage_supervised.py /tmp/rf/main/data --steps 600
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F

from mlfo.data.transforms import normalize_clips, resize_clip
from mlfo.models import build_backbone


def load_split(root: Path, split: str, classes: list[str]) -> tuple[list[np.ndarray], np.ndarray]:
    """Every clip of ``split`` decoded whole: (T, H, W, 3) uint8 each, and the class indices."""
    clips, labels = [], []
    with open(root / f"{split}.csv", newline="") as f:
        for row in csv.DictReader(f):
            with av.open(str(root / row["path"])) as container:
                clips.append(np.stack([fr.to_ndarray(format="rgb24") for fr in container.decode(video=0)]))
            labels.append(classes.index(row["label"]))
    return clips, np.array(labels)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="a real-footage dataset (real_footage_data.py)")
    parser.add_argument("--widths", default="16,32,64,128", help="r3d_small widths (the benchmark's)")
    parser.add_argument("--size", type=int, default=32, help="crop side (the benchmark's)")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    classes = [c["name"] for c in json.loads((args.data / "classes.json").read_text())["classes"]]
    x_train, y_train = load_split(args.data, "train", classes)
    x_test, y_test = load_split(args.data, "test", classes)
    size, t = args.size, 16
    net = build_backbone("r3d_small", widths=[int(w) for w in args.widths.split(",")], num_classes=None)
    with torch.no_grad():
        dim = net(torch.zeros(1, 3, t, size, size)).shape[1]
    head = torch.nn.Linear(dim, len(classes))
    opt = torch.optim.Adam([*net.parameters(), *head.parameters()], 1e-3, weight_decay=1e-5)

    def view(video: np.ndarray, train: bool) -> torch.Tensor:
        start = rng.integers(0, len(video) - t + 1) if train else (len(video) - t) // 2
        clip = torch.from_numpy(np.ascontiguousarray(video[start:start + t]))
        if train:
            side = int(clip.shape[1] * np.sqrt(rng.uniform(0.5, 1)))
            top, left = rng.integers(0, clip.shape[1] - side + 1, 2)
            clip = clip[:, top:top + side, left:left + side]
            if rng.random() < 0.5:
                clip = clip.flip(2)
        else:  # the eval views of the benchmark: resize to 8/7 of the crop, centre crop
            clip = resize_clip(clip, (round(size * 8 / 7),) * 2)
            o = (clip.shape[1] - size) // 2
            clip = clip[:, o:o + size, o:o + size]
        return resize_clip(clip, (size, size))

    def predict(videos: list[np.ndarray]) -> np.ndarray:
        net.eval()
        with torch.no_grad():
            out = [head(net(normalize_clips(torch.stack([view(v, False) for v in videos[i:i + 32]])))).argmax(1)
                   for i in range(0, len(videos), 32)]
        net.train()
        return torch.cat(out).numpy()

    def factor(pred: np.ndarray, true: np.ndarray, part: int) -> float:
        return 100 * float(np.mean([classes[a].split("_")[part] == classes[b].split("_")[part]
                                    for a, b in zip(pred, true)]))

    started = time.time()
    for step in range(1, args.steps + 1):
        idx = rng.integers(0, len(x_train), 16)
        clips = normalize_clips(torch.stack([view(x_train[i], True) for i in idx]))
        loss = F.cross_entropy(head(net(clips)), torch.from_numpy(y_train[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == args.steps:
            test, train = predict(x_test), predict(x_train)
            print(f"step {step} loss {loss.item():.2f} train {100 * np.mean(train == y_train):.1f} "
                  f"test {100 * np.mean(test == y_test):.1f} direction {factor(test, y_test, 0):.1f} "
                  f"speed {factor(test, y_test, 1):.1f} ({time.time() - started:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
