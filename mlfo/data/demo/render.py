"""Rendering demo videos with vectorised numpy: inverse-mapped pixel grids and
nearest-neighbour texture lookup.

To keep appearance from identifying a video cheaply (see the notes on the demo data),
every motion-class video draws its background, object textures and object shapes from
one small pool shared by all motion classes, and its motion parameters (direction,
speed, zoom or spin rate, gravity) vary continuously within the class. Everything is a
function of the seed: the texture pool comes from ``seed``, each video from
``(seed, class, index)``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from mlfo.data.demo.classes import APPEARANCE_SHAPES, CLASS_NAMES, CLASSES, POOL_SHAPES, DemoClass

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
    angles = np.zeros((num_objects, num_frames)) + rng.uniform(0, 2 * np.pi, size=(num_objects, 1))
    speed_jitter = rng.uniform(0.85, 1.15, size=(num_objects, 1))
    positions, angles, zoom = _motion(cls.name, rng, t, starts, speed_jitter, angles, (height, width), margin)
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


def _motion(name: str, rng: np.random.Generator, t: np.ndarray, starts: np.ndarray, speed_jitter: np.ndarray,
            angles: np.ndarray, frame: tuple[int, int], margin: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A class's motion: positions (K, F, 2), angles (K, F) and camera zoom (F,). The draws
    from ``rng`` keep their order (the demo data is pinned byte for byte)."""
    height, width = frame
    num_frames = len(t)
    zoom = np.ones(num_frames)

    def drift(direction_deg: float, speed: float) -> np.ndarray:
        d = np.deg2rad(direction_deg)
        velocity = speed * np.array([-np.sin(d), np.cos(d)])  # 90 deg = up (y grows downward)
        return _wrap(starts[:, None, :] + speed_jitter[..., None] * velocity * t[None, :, None], height, width, margin)

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
        phase = rng.uniform(0, 1, size=len(starts)) * period
        tau = np.mod(t[None, :] + phase[:, None], period[:, None])
        y = -margin + 0.5 * gravity[:, None] * tau**2
        x = np.broadcast_to(starts[:, 1:2], y.shape)
        positions = np.stack([y, x], axis=-1)
    else:  # appearance classes: generic slow drift and spin in any direction
        spin = np.deg2rad(rng.uniform(-3.0, 3.0))
        angles = angles + spin * t[None, :]
        positions = drift(rng.uniform(0, 360), rng.uniform(0.2, 1.2))
    return positions, angles, zoom


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
