"""Raw sources against their ``mlfo data prepare`` copies, for ``data_throughput.py --prepared``.

Sources: 10 s videos (250 frames, 25 fps) of a textured scene panning under three moving
discs, encoded as raw Kinetics-like downloads are (x264 defaults: CRF 23, GOP 250,
B-frames) at 320x240, 640x360 and 1280x720; made once under ``--work-dir``. Each source
folder is prepared with the defaults of ``mlfo data prepare`` in this process (one worker,
so its CPU time is the prepare cost per video on one core).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image

SIZES = ((320, 240), (640, 360), (1280, 720))
FRAMES = 250


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Smooth multi-scale noise, uint8 (H, W, 3): detail at every scale, as filmed scenes have."""
    out = np.zeros((height, width, 3), np.float32)
    for cell, weight in ((4, 0.25), (16, 0.35), (64, 0.4)):
        small = rng.random((height // cell + 2, width // cell + 2, 3)).astype(np.float32)
        big = Image.fromarray((small * 255).astype(np.uint8)).resize(
            ((width // cell + 2) * cell, (height // cell + 2) * cell), Image.BICUBIC)
        out += weight * np.asarray(big, np.float32)[:height, :width]
    return out.clip(0, 255).astype(np.uint8)


def textured_video(path: Path, width: int, height: int, seed: int, frames: int = FRAMES) -> Path:
    """Write one source video (see the module doc), unless it exists."""
    from mlfo.data.demo import write_mp4

    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    scene = _texture(rng, height + frames, width + 2 * frames)
    yy, xx = np.mgrid[:height, :width]
    out = np.empty((frames, height, width, 3), np.uint8)
    discs = rng.random((3, 5))  # x, y, vx, vy, colour
    for t in range(frames):
        frame = scene[t // 2: t // 2 + height, 2 * t: 2 * t + width].copy()
        for x, y, vx, vy, c in discs:
            cx = (x + (vx - 0.5) * t / frames) * width
            cy = (y + (vy - 0.5) * t / frames) * height
            mask = (xx - cx) ** 2 + (yy - cy) ** 2 < (height / 8) ** 2
            frame[mask] = (np.array([c, 1 - c, 0.5]) * 255).astype(np.uint8)
        out[t] = frame
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(".tmp-" + path.name)
    write_mp4(tmp, out, fps=25, crf=23)
    tmp.rename(path)
    return path


def sources(work_dir: Path, count: int) -> dict[str, list[Path]]:
    """label -> the source videos of each size."""
    return {f"H.264 {w}x{h}": [textured_video(work_dir / f"raw_{w}x{h}" / f"v{k}.mp4", w, h, seed=k)
                               for k in range(count)] for w, h in SIZES}


def prepared(paths: list[Path], work_dir: Path) -> tuple[list[Path], float]:
    """The copies of ``paths`` (``mlfo data prepare``'s defaults) and its CPU seconds per video
    (measured when made; a reused copy reports the time recorded then)."""
    from mlfo.data.prepare import prepare

    dst = work_dir / f"prepared_{paths[0].parent.name}"
    record = dst / ".mlfo-prepare" / "bench_cpu_s.txt"
    if not record.exists():
        start = time.process_time()
        report = prepare(paths[0].parent, dst, workers=1, progress=False)
        assert not report.failed, report.failed
        cpu = (time.process_time() - start) / len(paths)
        record.write_text(f"{cpu}\n")
    return [dst / p.name for p in paths], float(record.read_text())


def mean_bytes(paths: list[Path]) -> float:
    return sum(p.stat().st_size for p in paths) / len(paths)


def profile_sample(paths: list[Path], samples: int = 60) -> dict[str, float]:
    """CPU milliseconds per sample by stage, from wrapped stages of the real code path:
    open (container + demux index), decode (the rest of ``get_frames``), colour conversion
    (``_to_tensor``: YUV -> RGB, scaling), crop + resize + flip, collation (a batch of 16)."""
    from mlfo.data import transforms
    from mlfo.data.datasets import ThreeClipDataset
    from mlfo.data.loading import collate
    from mlfo.data.readers import pyav
    from mlfo.data.sources import VideoRecord

    spent = {"open + demux index": 0.0, "frames (decode + convert)": 0.0, "colour conversion": 0.0,
             "crop + resize + flip": 0.0}

    def timed(owner, name, key):
        real = getattr(owner, name)

        def wrapper(*args, **kwargs):
            start = time.process_time()
            try:
                return real(*args, **kwargs)
            finally:
                spent[key] += time.process_time() - start
        setattr(owner, name, wrapper)
        return real

    wrapped = [(pyav.PyAVReader, "__init__", "open + demux index"), (pyav.PyAVReader, "_read", "frames (decode + convert)"),
               (pyav.PyAVReader, "_to_tensor", "colour conversion"),
               (transforms.RandomResizedCropFlip, "__call__", "crop + resize + flip")]
    originals = [(owner, name, timed(owner, name, key)) for owner, name, key in wrapped]
    try:
        ds = ThreeClipDataset([VideoRecord(str(p), FRAMES, 25.0, 0, 0) for p in paths], backend="pyav")
        start = time.process_time()
        items = [ds[(0, i % len(ds))] for i in range(samples)]
        total = time.process_time() - start
    finally:
        for owner, name, real in originals:
            setattr(owner, name, real)
    start = time.process_time()
    for k in range(0, samples - 15, 16):
        collate(items[k:k + 16])
    collation = (time.process_time() - start) / (samples // 16 * 16)
    ms = {k: 1000 * v / samples for k, v in spent.items()}
    ms["decode (frames minus colour conversion)"] = ms.pop("frames (decode + convert)") - ms["colour conversion"]
    ms["other (sampling, stacking)"] = 1000 * total / samples - sum(ms.values())
    ms["collation (per sample)"] = 1000 * collation
    return ms
