"""The built-in demo dataset: synthetic labelled action videos, written as real H.264 mp4.

Most classes are defined by *motion* (direction, zoom, rotation, acceleration, forward vs
reversed playback) and a few by *appearance* (the object's shape), so a representation
scores well on the motion group only if it captures motion. To keep appearance from
identifying a video cheaply (see docs on the demo data), every motion-class video draws
its background, object textures and object shapes from one small pool shared by all
motion classes, and its motion parameters (direction, speed, zoom or spin rate, gravity)
vary continuously within the class. Every motion is asymmetric in time (reversed
playback of "fall" is its own class, "zoom in" reversed is "zoom out", ...), so the
time-reversed hard negatives of MLFO are learnable.

Frames are rendered with vectorised numpy (inverse-mapped pixel grids, nearest-neighbour
texture lookup) and encoded with libx264 through PyAV. Everything is a function of the
seed: the texture pool comes from ``seed``, each video from ``(seed, class, index)``, so
the files do not depend on the number of worker processes.

    generate_demo_dataset("demo_data", seed=0)   # videos/*.mp4, all/train/test.csv, classes.json
"""

from __future__ import annotations

import csv
import functools
import json
import multiprocessing
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mlfo.errors import MLFOError

FORMAT_VERSION = 2  # 2: smaller shared texture pool (2 backgrounds, 3 object textures)


@dataclass(frozen=True)
class DemoClass:
    name: str
    group: str  # "motion" | "appearance"
    description: str


CLASSES: tuple[DemoClass, ...] = (
    DemoClass("move_up", "motion", "objects drift upward at a constant speed, leaving at the top and re-entering at the bottom"),
    DemoClass("move_down", "motion", "objects drift downward at a constant speed, leaving at the bottom and re-entering at the top"),
    DemoClass("move_sideways", "motion", "objects drift left or right at a constant speed (either way: flip-invariant)"),
    DemoClass("zoom_in", "motion", "the camera zooms in: the whole scene grows about a point"),
    DemoClass("zoom_out", "motion", "the camera zooms out: the whole scene shrinks towards a point"),
    DemoClass("rotate", "motion", "objects spin in place, clockwise or anticlockwise (flip-invariant)"),
    DemoClass("fall", "motion", "objects drop from rest above the frame and accelerate downward (gravity)"),
    DemoClass("fall_reversed", "motion", "'fall' played backwards: objects shoot up from the bottom and decelerate"),
    DemoClass("ring", "appearance", "ring-shaped objects with a generic slow drift and spin"),
    DemoClass("cross", "appearance", "cross-shaped objects with a generic slow drift and spin"),
    DemoClass("triangle", "appearance", "triangular objects with a generic slow drift and spin"),
)
CLASS_NAMES = tuple(c.name for c in CLASSES)

# Shapes of the shared pool (motion classes) vs the shapes that define appearance classes.
POOL_SHAPES = ("disk", "square", "ellipse")
APPEARANCE_SHAPES = {"ring": "ring", "cross": "cross", "triangle": "triangle"}

BACKGROUND_PERIOD = 256  # px; periodic textures tile seamlessly when zooming out
OBJECT_PERIOD = 64
OUTLINE = np.array([20, 20, 20], dtype=np.uint8)


# ----------------------------------------------------------------------------- textures
def _periodic_texture(rng: np.random.Generator, period: int, freq: tuple[int, int]) -> np.ndarray:
    """A scalar pattern in [0, 1] of shape (period, period) that tiles without seams.

    ``freq``: range of spatial frequencies in cycles per period.
    """
    kind = rng.choice(["noise", "stripes", "checker", "dots", "waves"])
    y, x = np.mgrid[0:period, 0:period].astype(np.float32) * (2 * np.pi / period)
    lo, hi = freq
    if kind == "noise":
        # Band-pass filtered white noise: blotches of a random size.
        spectrum = np.fft.fft2(rng.standard_normal((period, period)))
        fy = np.fft.fftfreq(period)[:, None] * period
        fx = np.fft.fftfreq(period)[None, :] * period
        centre = rng.uniform(lo, hi)
        band = np.exp(-((np.hypot(fy, fx) - centre) ** 2) / (2 * (centre * 0.4) ** 2))
        pattern = np.real(np.fft.ifft2(spectrum * band))
    elif kind == "stripes":
        k = rng.integers(lo, hi + 1)
        theta = rng.uniform(0, np.pi)
        ky, kx = int(round(k * np.sin(theta))), int(round(k * np.cos(theta)))  # integers: periodic
        pattern = np.sin(ky * y + kx * x)
    elif kind == "checker":
        k = rng.integers(lo, hi + 1)
        pattern = np.sign(np.sin(k * y) * np.sin(k * x) + 1e-6)
    elif kind == "dots":
        k = rng.integers(lo, hi + 1)
        pattern = (np.cos(k * y) + np.cos(k * x)) - 1.0
    else:  # waves
        ky, kx = rng.integers(lo, hi + 1, size=2)
        pattern = np.sin(kx * x + 1.5 * np.sin(ky * y))
    pattern = pattern - pattern.min()
    return (pattern / max(pattern.max(), 1e-6)).astype(np.float32)


def _coloured(pattern: np.ndarray, rng: np.random.Generator, contrast: float) -> np.ndarray:
    """Map a [0, 1] pattern onto a random two-colour palette; uint8 (P, P, 3)."""
    base = rng.uniform(0.15, 0.85, size=3)
    direction = rng.standard_normal(3)
    direction /= np.linalg.norm(direction)
    c0 = np.clip(base - direction * contrast / 2, 0, 1)
    c1 = np.clip(base + direction * contrast / 2, 0, 1)
    img = c0 + pattern[..., None] * (c1 - c0)
    return np.round(img * 255).astype(np.uint8)


@dataclass
class TexturePool:
    """Appearance shared by all motion classes: few enough that videos share it."""

    backgrounds: list[np.ndarray]  # uint8 (BACKGROUND_PERIOD, BACKGROUND_PERIOD, 3)
    objects: list[np.ndarray]  # uint8 (OBJECT_PERIOD, OBJECT_PERIOD, 3)


@functools.lru_cache(maxsize=4)
def texture_pool(seed: int, num_backgrounds: int = 2, num_object_textures: int = 3) -> TexturePool:
    """A pool this small is deliberate: with 6 backgrounds x 8 textures, two clips of a video
    were matched by their colours within a few steps and the encoder learned appearance
    only (motion kNN below random init after 150 steps); with 2 x 3, many videos of a
    batch look alike, so telling them apart takes their motion (docs/results.md)."""
    rng = np.random.default_rng([seed, 0x7E47])
    backgrounds = [
        _coloured(_periodic_texture(rng, BACKGROUND_PERIOD, freq=(8, 18)), rng, contrast=rng.uniform(0.2, 0.4))
        for _ in range(num_backgrounds)
    ]
    objects = [
        _coloured(_periodic_texture(rng, OBJECT_PERIOD, freq=(3, 7)), rng, contrast=rng.uniform(0.6, 0.9))
        for _ in range(num_object_textures)
    ]
    return TexturePool(backgrounds, objects)


# ----------------------------------------------------------------------------- shapes
def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside test in object coordinates (radius 1, v pointing down)."""
    if shape == "disk":
        return u * u + v * v <= 1.0
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8
    if shape == "ellipse":
        return u * u + (v * v) / 0.3 <= 1.0
    if shape == "ring":
        r2 = u * u + v * v
        return (r2 <= 1.0) & (r2 >= 0.36)
    if shape == "cross":
        au, av = np.abs(u), np.abs(v)
        return ((au <= 0.3) & (av <= 1.0)) | ((av <= 0.3) & (au <= 1.0))
    if shape == "triangle":
        up = -v
        return (up >= -0.5) & (up <= 1.0 - 1.732 * np.abs(u))
    raise ValueError(shape)


# ----------------------------------------------------------------------------- motion
@dataclass
class _Object:
    shape: str
    texture: int
    radius: float
    pos: np.ndarray  # (F, 2) world (y, x)
    angle: np.ndarray  # (F,) radians
    texture_offset: np.ndarray  # (2,)


@dataclass
class _Scene:
    background: int
    background_offset: np.ndarray  # (2,)
    zoom: np.ndarray  # (F,) camera scale (>1: magnified)
    zoom_centre: np.ndarray  # (2,) screen (y, x)
    objects: list[_Object]


def _wrap(pos: np.ndarray, height: int, width: int, margin: float) -> np.ndarray:
    """Objects leaving one side re-enter on the other (positions in [-margin, size+margin))."""
    size = np.array([height, width], dtype=np.float64) + 2 * margin
    return np.mod(pos + margin, size) - margin


def _make_scene(cls: DemoClass, rng: np.random.Generator, pool: TexturePool, num_frames: int, height: int, width: int) -> _Scene:
    t = np.arange(num_frames, dtype=np.float64)
    size = min(height, width)
    num_objects = int(rng.integers(1, 4))
    radii = rng.uniform(0.11, 0.2, size=num_objects) * size
    margin = float(radii.max() * 1.2)
    if cls.group == "appearance":
        shapes = [APPEARANCE_SHAPES[cls.name]] * num_objects
    else:
        shapes = [POOL_SHAPES[i] for i in rng.integers(0, len(POOL_SHAPES), size=num_objects)]
    starts = rng.uniform([0, 0], [height, width], size=(num_objects, 2))
    zoom = np.ones(num_frames)
    angles = np.zeros((num_objects, num_frames)) + rng.uniform(0, 2 * np.pi, size=(num_objects, 1))
    speed_jitter = rng.uniform(0.85, 1.15, size=(num_objects, 1))
    positions: np.ndarray  # (K, F, 2)

    def drift(direction_deg: float, speed: float) -> np.ndarray:
        d = np.deg2rad(direction_deg)
        velocity = speed * np.array([-np.sin(d), np.cos(d)])  # 90 deg = up (y grows downward)
        return _wrap(starts[:, None, :] + speed_jitter[..., None] * velocity * t[None, :, None], height, width, margin)

    name = cls.name
    if name in ("move_up", "move_down", "move_sideways"):
        base = {"move_up": 90.0, "move_down": 270.0, "move_sideways": float(rng.choice([0.0, 180.0]))}[name]
        positions = drift(base + rng.uniform(-20, 20), rng.uniform(0.6, 2.2))
    elif name in ("zoom_in", "zoom_out"):
        rate = rng.uniform(0.012, 0.028) * (1 if name == "zoom_in" else -1)
        zoom = np.exp(rate * (t - (num_frames - 1) / 2))
        positions = drift(rng.uniform(0, 360), rng.uniform(0.0, 0.3))
    elif name == "rotate":
        spin = np.deg2rad(rng.uniform(2.5, 7.0)) * rng.choice([-1.0, 1.0])
        angles = angles + spin * speed_jitter * t[None, :]
        positions = drift(rng.uniform(0, 360), rng.uniform(0.0, 0.3))
    elif name in ("fall", "fall_reversed"):  # reversed: rendered as "fall", frames flipped later
        gravity = rng.uniform(0.06, 0.16) * speed_jitter[:, 0]  # px / frame^2
        period = np.sqrt(2 * (height + 2 * margin) / gravity)  # frames from top to bottom
        phase = rng.uniform(0, 1, size=num_objects) * period
        tau = np.mod(t[None, :] + phase[:, None], period[:, None])
        y = -margin + 0.5 * gravity[:, None] * tau**2
        x = np.broadcast_to(starts[:, 1:2], y.shape)
        positions = np.stack([y, x], axis=-1)
    else:  # appearance classes: generic slow drift and spin in any direction
        spin = np.deg2rad(rng.uniform(-3.0, 3.0))
        angles = angles + spin * t[None, :]
        positions = drift(rng.uniform(0, 360), rng.uniform(0.2, 1.2))

    objects = [
        _Object(
            shape=shapes[k],
            texture=int(rng.integers(0, len(pool.objects))),
            radius=float(radii[k]),
            pos=positions[k],
            angle=angles[k],
            texture_offset=rng.uniform(0, OBJECT_PERIOD, size=2),
        )
        for k in range(num_objects)
    ]
    return _Scene(
        background=int(rng.integers(0, len(pool.backgrounds))),
        background_offset=rng.uniform(0, BACKGROUND_PERIOD, size=2),
        zoom=zoom,
        zoom_centre=np.array([height, width]) / 2 + rng.uniform(-0.15, 0.15, size=2) * size,
        objects=objects,
    )


def _render(scene: _Scene, pool: TexturePool, num_frames: int, height: int, width: int) -> np.ndarray:
    """uint8 (F, H, W, 3) frames of a scene."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    zoom = scene.zoom.astype(np.float32)[:, None, None]
    cy, cx = scene.zoom_centre.astype(np.float32)
    wy = cy + (yy[None] - cy) / zoom  # (F, H, W) world coordinates of each pixel
    wx = cx + (xx[None] - cx) / zoom
    bg = pool.backgrounds[scene.background]
    by = (wy + scene.background_offset[0]).astype(np.int64) % BACKGROUND_PERIOD
    bx = (wx + scene.background_offset[1]).astype(np.int64) % BACKGROUND_PERIOD
    frames = bg[by, bx]  # (F, H, W, 3)
    for obj in scene.objects:
        dy = wy - obj.pos[:, 0, None, None].astype(np.float32)
        dx = wx - obj.pos[:, 1, None, None].astype(np.float32)
        cos = np.cos(obj.angle).astype(np.float32)[:, None, None]
        sin = np.sin(obj.angle).astype(np.float32)[:, None, None]
        lu = cos * dx + sin * dy  # object-frame coordinates, pixels
        lv = -sin * dx + cos * dy
        u, v = lu / obj.radius, lv / obj.radius
        inside = _shape_mask(obj.shape, u, v)
        outline = _shape_mask(obj.shape, u / 1.15, v / 1.15) & ~inside
        tex = pool.objects[obj.texture]
        ty = (lv + obj.texture_offset[0]).astype(np.int64) % OBJECT_PERIOD
        tx = (lu + obj.texture_offset[1]).astype(np.int64) % OBJECT_PERIOD
        frames[outline] = OUTLINE
        frames[inside] = tex[ty[inside], tx[inside]]
    return frames


def render_demo_video(class_name: str, seed: int, index: int, num_frames: int = 64, height: int = 80, width: int = 80) -> np.ndarray:
    """The frames of demo video ``index`` of class ``class_name``: uint8 (F, H, W, 3)."""
    class_id = CLASS_NAMES.index(class_name)
    cls = CLASSES[class_id]
    rng = np.random.default_rng([seed, class_id, index])
    pool = texture_pool(seed)
    frames = _render(_make_scene(cls, rng, pool, num_frames, height, width), pool, num_frames, height, width)
    if class_name == "fall_reversed":
        frames = frames[::-1]
    return np.ascontiguousarray(frames)


def write_mp4(path: str | os.PathLike, frames: np.ndarray, fps: int = 25, crf: int = 20) -> None:
    """Encode uint8 (F, H, W, 3) RGB frames as H.264 (yuv420p) mp4."""
    import av

    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        # Identical bytes on every run: one thread, and no macroblock-tree rate control
        # (measured here: with mbtree on, x264 gave two different encodings of the same
        # frames for about 1 video in 10, even single-threaded).
        stream.options = {"crf": str(crf), "preset": "fast", "threads": "1", "x264-params": "mbtree=0"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


# ----------------------------------------------------------------------------- dataset
@dataclass(frozen=True)
class _Job:
    out_dir: str
    class_name: str
    index: int
    seed: int
    num_frames: int
    height: int
    width: int
    fps: int
    crf: int

    @property
    def relpath(self) -> str:
        return f"videos/{self.class_name}_{self.index:03d}.mp4"


def _write_one(job: _Job) -> str:
    frames = render_demo_video(job.class_name, job.seed, job.index, job.num_frames, job.height, job.width)
    write_mp4(Path(job.out_dir) / job.relpath, frames, fps=job.fps, crf=job.crf)
    return job.relpath


def _params(seed, videos_per_class, num_frames, height, width, fps, crf, train_fraction, classes) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "videos_per_class": videos_per_class,
        "num_frames": num_frames,
        "height": height,
        "width": width,
        "fps": fps,
        "crf": crf,
        "train_fraction": train_fraction,
        "classes": list(classes),
    }


def _is_complete(out_dir: Path, params: dict) -> bool:
    """True when ``out_dir`` already holds a finished dataset made with ``params``."""
    try:
        meta = json.loads((out_dir / "classes.json").read_text())
        if meta.get("params") != params:
            return False
        with open(out_dir / "all.csv", newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, ValueError):
        return False
    expected = params["videos_per_class"] * len(params["classes"])
    return len(rows) == expected and all((out_dir / r["path"]).is_file() for r in rows)


def generate_demo_dataset(
    out_dir: str | os.PathLike,
    seed: int = 0,
    *,
    videos_per_class: int = 30,
    num_frames: int = 64,
    height: int = 80,
    width: int = 80,
    fps: int = 25,
    crf: int = 20,
    train_fraction: float = 2 / 3,
    classes: list[str] | tuple[str, ...] | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write the demo dataset to ``out_dir`` and return its path.

    Layout: ``videos/<class>_<i>.mp4``, ``all.csv`` / ``train.csv`` / ``test.csv``
    (``path,n_frames,label``, paths relative to ``out_dir``, split stratified by class:
    the first ``round(train_fraction * videos_per_class)`` videos of each class train)
    and ``classes.json``. A folder already holding the same dataset (same parameters)
    is reused as is unless ``overwrite``. ``workers`` defaults to the CPU count.
    ``progress(done, total)`` is called after each video.
    """
    classes = tuple(classes) if classes is not None else CLASS_NAMES
    unknown = [c for c in classes if c not in CLASS_NAMES]
    if unknown:
        raise MLFOError(f"classes: unknown demo class {unknown[0]!r} (choose from {', '.join(CLASS_NAMES)})")
    if videos_per_class < 2:
        raise MLFOError(f"videos_per_class: need at least 2 (one train, one test), got {videos_per_class}")
    if height % 2 or width % 2 or min(height, width) < 16:
        raise MLFOError(f"frame size: height and width must be even and at least 16, got {height}x{width}")
    if num_frames < 2:
        raise MLFOError(f"num_frames: need at least 2, got {num_frames}")
    if not 0 < train_fraction < 1:
        raise MLFOError(f"train_fraction: must be between 0 and 1, got {train_fraction}")

    out = Path(out_dir)
    params = _params(seed, videos_per_class, num_frames, height, width, fps, crf, train_fraction, classes)
    if not overwrite and _is_complete(out, params):
        return out
    if out.exists() and not out.is_dir():
        raise MLFOError(f"{out}: exists and is not a folder")
    (out / "videos").mkdir(parents=True, exist_ok=True)

    jobs = [
        _Job(str(out), name, i, seed, num_frames, height, width, fps, crf)
        for name in classes
        for i in range(videos_per_class)
    ]
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    start = time.perf_counter()
    if workers == 1:
        results = map(_write_one, jobs)
        _consume(results, len(jobs), progress)
    else:
        # fork: workers only need numpy and PyAV, and start instantly.
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
        with multiprocessing.get_context(method).Pool(workers) as pool:
            _consume(pool.imap(_write_one, jobs, chunksize=4), len(jobs), progress)
    elapsed = time.perf_counter() - start

    n_train = min(videos_per_class - 1, max(1, round(train_fraction * videos_per_class)))
    rows = [(job.relpath, num_frames, job.class_name, job.index < n_train) for job in jobs]
    for name, keep in (("all", lambda r: True), ("train", lambda r: r[3]), ("test", lambda r: not r[3])):
        with open(out / f"{name}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "n_frames", "label"])
            writer.writerows(r[:3] for r in rows if keep(r))
    by_name = {c.name: c for c in CLASSES}
    meta = {
        "classes": [asdict(by_name[name]) for name in classes],
        "params": params,
        "generation_seconds": round(elapsed, 2),
    }
    (out / "classes.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out


def _consume(results, total: int, progress) -> None:
    for done, _ in enumerate(results, 1):
        if progress is not None:
            progress(done, total)


def demo_summary(out_dir: str | os.PathLike) -> str:
    """A human-readable table of a generated demo dataset (classes, groups, split sizes)."""
    out = Path(out_dir)
    try:
        meta = json.loads((out / "classes.json").read_text())
        counts: dict[str, dict[str, int]] = {}
        for split in ("train", "test"):
            with open(out / f"{split}.csv", newline="") as f:
                for row in csv.DictReader(f):
                    counts.setdefault(row["label"], {"train": 0, "test": 0})[split] += 1
    except (OSError, ValueError, KeyError) as err:
        raise MLFOError(f"{out}: not a demo dataset ({err})") from None
    p = meta["params"]
    width = max(len(c["name"]) for c in meta["classes"])
    lines = [
        f"demo dataset in {out}",
        f"  {len(meta['classes'])} classes, {sum(sum(c.values()) for c in counts.values())} videos "
        f"({p['width']}x{p['height']}, {p['num_frames']} frames at {p['fps']} fps, H.264), seed {p['seed']}",
        "",
        f"  {'class':<{width}}  {'group':<10}  train  test  description",
    ]
    for c in meta["classes"]:
        n = counts.get(c["name"], {"train": 0, "test": 0})
        lines.append(f"  {c['name']:<{width}}  {c['group']:<10}  {n['train']:>5}  {n['test']:>4}  {c['description']}")
    lines += ["", f"  files: {out / 'all.csv'}, {out / 'train.csv'}, {out / 'test.csv'}, {out / 'classes.json'}"]
    return "\n".join(lines)
