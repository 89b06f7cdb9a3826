"""Data throughput per worker process: MLFO pretraining samples per second, and per core.

One sample = decode one video's 2T-frame span, cut clips A, B and G (method.md §1), random
resized crop + flip to 112x112 per clip (in the DataLoader worker); "+ colour, CPU" adds
random grayscale + colour jitter + normalisation on the same core (in training it runs
batched on the device). Measured in one process for

- mlfo on H.264 mp4 files and on the same videos as MPEG-4 .avi (UCF101's codec and
  container): PyAV single-threaded (the default); "pyav earlier": the same reader without
  its speed-ups (``earlier_reader`` below: the before/after of one run); PyAV with 2
  decoder threads; PyAV with the opt-in ``decode_size`` (frames scaled in the decoder's
  swscale before the crop); torchcodec (CPU) when it imports; ``--hd`` adds 1280x720
  H.264 files;
- mlfo on JPEG frame folders (``frames`` backend) and the reference implementation's way:
  JPEG frame folders, every frame opened with PIL and resized to 200x150 (ignoring the
  aspect ratio), then per-frame Python transforms (``reference_sample`` below).

Each row reports samples per wall second and samples per CPU second of the process (the
rate per core, threads included: what 16 workers on 16 cores would each deliver if
nothing else limits them).

Data: the demo dataset re-rendered at 320x240 with enough frames for T=16 at rate 3,
plus the same videos as MPEG-4 .avi and as JPEG frame dumps (``image_00001.jpg``...),
created on first run under ``--work-dir`` and reused after. Printed last: the ratio of
our video-file path to the reference frame-folder path, per core.

    python benchmarks/data_throughput.py                  # ~2.5 min (+1 min the first time: data)
    python benchmarks/data_throughput.py --quick          # ~45 s
    python benchmarks/data_throughput.py --quick --no-reference   # video rows only
    python benchmarks/data_throughput.py --prepared       # raw sources vs their `mlfo data prepare`
                                                          # copies (benchmarks/prepared_rows.py);
                                                          # ~10 min the first time (sources, copies)
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageEnhance  # noqa: E402

from mlfo.data import datasets  # noqa: E402
from mlfo.data.datasets import ThreeClipDataset  # noqa: E402
from mlfo.data.demo import generate_demo_dataset, write_mp4  # noqa: E402
from mlfo.data.sampling import sample_mlfo_indices  # noqa: E402
from mlfo.data.sources import VideoRecord  # noqa: E402
from mlfo.data.transforms import IMAGENET_MEAN, IMAGENET_STD, ColorAugment  # noqa: E402
from mlfo.data.readers import open_video, pyav  # noqa: E402


# ----------------------------------------------------------------------------- data
def prepare_data(work_dir: Path, videos_per_class: int, num_frames: int) -> tuple[list[Path], list[Path]]:
    """320x240 demo videos and their JPEG frame folders (made once, then reused)."""
    root = generate_demo_dataset(
        work_dir / "videos_320x240", seed=0, videos_per_class=videos_per_class,
        num_frames=num_frames, width=320, height=240,
    )
    videos = sorted((root / "videos").glob("*.mp4"))
    folders, avis = [], []
    for video in videos:
        avi = work_dir / "avi_320x240" / f"{video.stem}.avi"
        if not avi.exists():
            avi.parent.mkdir(parents=True, exist_ok=True)
            with open_video(video) as reader:
                write_mpeg4_avi(avi.with_suffix(".tmp.avi"), reader.get_frames(range(reader.num_frames)).numpy())
            avi.with_suffix(".tmp.avi").rename(avi)
        avis.append(avi)
        folder = work_dir / "frames_320x240" / video.stem
        done = folder / ".complete"
        if not done.exists():
            folder.mkdir(parents=True, exist_ok=True)
            with open_video(video) as reader:
                frames = reader.get_frames(range(reader.num_frames)).numpy()
            for i, frame in enumerate(frames, 1):
                Image.fromarray(frame).save(folder / f"image_{i:05d}.jpg", quality=90)
            done.touch()
        folders.append(folder)
    return videos, avis, folders


def prepare_hd(work_dir: Path, count: int, num_frames: int) -> list[Path]:
    """1280x720 H.264 mp4 files of a panning texture (the demo renderer is too slow at 720p)."""
    folder = work_dir / "mp4_1280x720"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(count):
        path = folder / f"hd{k:02d}.mp4"
        if not path.exists():
            rng = np.random.default_rng(k)
            coarse = rng.integers(0, 256, size=(720 // 16 + num_frames, 1280 // 16 + num_frames, 3), dtype=np.uint8)
            texture = np.kron(coarse, np.ones((16, 16, 1), np.uint8))
            frames = np.stack([texture[2 * t: 2 * t + 720, 3 * t: 3 * t + 1280] for t in range(num_frames)])
            write_mp4(path.with_suffix(".tmp.mp4"), frames, fps=25, crf=23)
            path.with_suffix(".tmp.mp4").rename(path)
        paths.append(path)
    return paths


def write_mpeg4_avi(path: Path, frames: np.ndarray) -> None:
    """MPEG-4 part 2 in .avi, the codec and container of UCF101 (which is 320x240 too)."""
    import av

    with av.open(str(path), mode="w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.bit_rate = 1_000_000
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


# ----------------------------------------------------------------------------- the reference way
# Per frame, with PIL, as the reference implementation's data loader does. Crop box and
# flip are drawn once per clip; grayscale and colour jitter per frame (its default).
REF_SIZE = (200, 150)  # every frame is resized to this first, aspect ratio ignored


def _ref_crop_box(width: int, height: int, scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3)):
    area = width * height
    for _ in range(10):
        target = area * random.uniform(*scale)
        aspect = math.exp(random.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            left, top = random.randint(0, width - w), random.randint(0, height - h)
            return left, top, left + w, top + h
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def _ref_adjust_hue(img: Image.Image, shift: float) -> Image.Image:
    h, s, v = img.convert("HSV").split()
    np_h = np.array(h, dtype=np.uint8)
    with np.errstate(over="ignore"):
        np_h += np.uint8(int(shift * 255) % 256)
    return Image.merge("HSV", (Image.fromarray(np_h, "L"), s, v)).convert("RGB")


def _ref_color_jitter(img: Image.Image, b=0.5, c=0.5, s=0.5, hue=0.25) -> Image.Image:
    ops = [
        lambda im: ImageEnhance.Brightness(im).enhance(random.uniform(1 - b, 1 + b)),
        lambda im: ImageEnhance.Contrast(im).enhance(random.uniform(1 - c, 1 + c)),
        lambda im: ImageEnhance.Color(im).enhance(random.uniform(1 - s, 1 + s)),
        lambda im: _ref_adjust_hue(im, random.uniform(-hue, hue)),
    ]
    random.shuffle(ops)
    for op in ops:
        img = op(img)
    return img


def _ref_random_gray(img: Image.Image, p=0.5) -> Image.Image:
    if random.random() < p:
        channel = img.split()[random.randrange(3)]
        return Image.merge("RGB", (channel, channel, channel))
    return img


_MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
_STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


def _ref_to_tensor_normalised(img: Image.Image) -> torch.Tensor:
    x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float().div(255)
    return (x - _MEAN) / _STD


def reference_sample(folder: Path, clip_len: int, r_max: float, crop: int, rng: np.random.Generator) -> torch.Tensor:
    """Three clips, float (3, 3, T, crop, crop). Each of the 2T frames is read and resized once
    (A, B and G share them), which is the cheapest reading of the reference's loader."""
    files = sorted(os.listdir(folder))
    files = [f for f in files if f.endswith(".jpg")]
    idx_a, idx_b, idx_g = sample_mlfo_indices(len(files), clip_len, r_max, rng)
    frames = {i: Image.open(folder / files[i]).convert("RGB").resize(REF_SIZE, Image.BILINEAR) for i in idx_a + idx_b}
    clips = []
    for idx in (idx_a, idx_b, idx_g):
        box = _ref_crop_box(*REF_SIZE)
        flip = random.random() < 0.5
        out = []
        for i in idx:
            img = frames[i].crop(box).resize((crop, crop), Image.BILINEAR)
            if flip:
                img = img.transpose(Image.FLIP_LEFT_RIGHT)
            img = _ref_color_jitter(_ref_random_gray(img))
            out.append(_ref_to_tensor_normalised(img))
        clips.append(torch.stack(out, 1))  # (3, T, crop, crop)
    return torch.stack(clips)


@contextlib.contextmanager
def earlier_reader(active: bool):
    """The PyAV reader as it decoded before this benchmark's speed-ups: every frame decoded
    (no skip of unwanted non-reference frames), FFmpeg's stream probe decoding the first
    frame, and FFmpeg's default decoder thread count (a thread per core). Same frames out."""
    if not active:
        yield
        return
    skim, codecs, real_open = pyav.SKIM, pyav.SKIP_NONREF_CODECS, pyav.PyAVReader._open

    def default_threads_open(self, skim=True):
        real_open(self, skim)
        if self._threads == 1:
            self._stream.codec_context.thread_count = 0

    pyav.SKIM, pyav.SKIP_NONREF_CODECS, pyav.PyAVReader._open = None, (), default_threads_open
    try:
        yield
    finally:
        pyav.SKIM, pyav.SKIP_NONREF_CODECS, pyav.PyAVReader._open = skim, codecs, real_open


# ----------------------------------------------------------------------------- timing
def measure_interleaved(pipelines: list, count: int, seconds: float, rounds: int = 5) -> list[tuple[float, float]]:
    """(samples per wall second, samples per CPU second) of each pipeline: medians over
    ``rounds`` short turns taken in rotation, so that load from other processes on the
    machine hits every pipeline alike. CPU time counts every thread of this process, so
    samples per CPU second is the rate per core, also for threaded decoding."""
    for *_, run_one in pipelines:  # warm-up: imports, first-open costs
        run_one(0)
        run_one(1)
    wall_rates = [[] for _ in pipelines]
    cpu_rates = [[] for _ in pipelines]
    position = [0] * len(pipelines)
    for _ in range(rounds):
        for k, (*_, run_one) in enumerate(pipelines):
            done, start, cpu = 0, time.perf_counter(), time.process_time()
            while time.perf_counter() - start < seconds / rounds:
                run_one(position[k] % count)
                position[k] += 1
                done += 1
            wall_rates[k].append(done / (time.perf_counter() - start))
            cpu_rates[k].append(done / max(time.process_time() - cpu, 1e-9))
    return [(float(np.median(w)), float(np.median(c))) for w, c in zip(wall_rates, cpu_rates)]


def run_prepared(args) -> int:
    """Raw H.264 sources (320x240, 640x360 GOP 250; 1280x720) against their prepared copies:
    samples per CPU second, interleaved in one run, with bytes and prepare CPU time per video;
    then where a prepared sample's CPU time goes."""
    sys.path.insert(0, str(Path(__file__).parent))
    import prepared_rows as pr

    print(f"preparing sources and copies in {args.work_dir} ...", file=sys.stderr, flush=True)
    rows = []
    for label, paths in pr.sources(args.work_dir, args.videos).items():
        copies, prepare_cpu = pr.prepared(paths, args.work_dir)
        rows.append((label, paths, copies, prepare_cpu))

    def pipeline(paths):
        ds = ThreeClipDataset([VideoRecord(str(p), pr.FRAMES, 25.0, 0, 0) for p in paths], clip_len=args.clip_len,
                              r_max=args.r_max, crop_size=args.crop, backend="pyav")
        return lambda i: ds[(0, i)]

    pipelines = [(pipeline(paths),) for _, raw, copy, _ in rows for paths in (raw, copy)]
    print(f"timing {len(pipelines)} pipelines, {args.seconds or 10:.0f} s each ...", file=sys.stderr, flush=True)
    measured = measure_interleaved(pipelines, args.videos, args.seconds or 10.0)
    print(f"{args.videos} videos per source, {pr.FRAMES} frames (10 s); a sample = 3 clips {args.clip_len}x"
          f"{args.crop}x{args.crop}, crop+flip; 1 process, 1 thread, torch {torch.__version__}\n")
    print("| source | raw samples/CPU-s | prepared samples/CPU-s | ratio | raw MB/video | prepared MB/video "
          "| prepare CPU-s/video |\n|---|---|---|---|---|---|---|")
    for k, (label, raw, copy, cpu) in enumerate(rows):
        (_, raw_rate), (_, copy_rate) = measured[2 * k], measured[2 * k + 1]
        print(f"| {label} | {raw_rate:.1f} | {copy_rate:.1f} | {copy_rate / raw_rate:.1f}x | "
              f"{pr.mean_bytes(raw) / 1e6:.3f} | {pr.mean_bytes(copy) / 1e6:.3f} | {cpu:.2f} |")
    copies_640 = rows[1][2]
    print(f"\nCPU ms per sample by stage, prepared copy of {rows[1][0]}:")
    for stage, ms in pr.profile_sample(copies_640).items():
        print(f"  {stage:<42} {ms:6.2f}")
    return 0


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="~3 s per pipeline instead of 10")
    parser.add_argument("--seconds", type=float, default=None, help="timing per pipeline (default 10, quick 3)")
    parser.add_argument("--no-reference", action="store_true", help="skip the frame-folder and reference pipelines")
    parser.add_argument("--clip-len", type=int, default=16)
    parser.add_argument("--r-max", type=float, default=3)
    parser.add_argument("--crop", type=int, default=112)
    parser.add_argument("--decode-size", type=int, default=160, help="short side of the opt-in decode_size rows")
    parser.add_argument("--hd", action="store_true", help="also 1280x720 H.264 files, exact and decode_size")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "mlfo_bench_data")
    parser.add_argument("--prepared", action="store_true", help="only the raw-vs-prepared rows (see run_prepared)")
    parser.add_argument("--videos", type=int, default=4, help="videos per source of the --prepared rows")
    return parser.parse_args(argv)


def _sampler(args, num_frames: int):
    """-> ``ours(paths, backend, with_color, ...)``: a function that loads sample ``i`` as
    mlfo's training loader does (one ``ThreeClipDataset`` item, colour optional)."""
    color = ColorAugment(per_frame_color=True)
    generator = torch.Generator().manual_seed(0)

    def ours(paths, backend, with_color, decode_size=None, threads=1, earlier=False):
        records = [VideoRecord(str(p), num_frames, 25.0, 320, 240) for p in paths]
        options = {"decode_size": decode_size} if decode_size else {}
        ds = ThreeClipDataset(records, clip_len=args.clip_len, r_max=args.r_max, crop_size=args.crop,
                              backend=backend, **options)

        def run_one(i):
            if threads != 1:  # the dataset opens readers single-threaded; this row asks for more
                datasets.open_video = lambda path, backend: open_video(path, backend, threads=threads)
            try:
                with earlier_reader(earlier):
                    item = ds[i % len(ds)]  # raises for a file the backend cannot read
            finally:
                datasets.open_video = open_video
            # In training colour runs batched on the training device; here on this core.
            return color(item["clips"], generator) if with_color else item["clips"]

        return run_one

    return ours


def _pipelines(args, num_frames: int, videos, avis, folders) -> list[tuple]:
    """(name, backend, input, augmentation, sample function) of every row to time."""
    ours = _sampler(args, num_frames)
    has_decode_size = "decode_size" in inspect.signature(ThreeClipDataset).parameters
    rng = np.random.default_rng(0)
    random.seed(0)
    crop = "crop+flip (worker)"
    pipelines = []
    sources = [("mp4 (H.264)", videos), ("avi (MPEG-4)", avis)]
    if args.hd:
        sources.append(("mp4 1280x720", prepare_hd(args.work_dir, 4, num_frames)))
    for source, paths in sources:
        pipelines.append(("mlfo", "pyav", source, crop, ours(paths, "pyav", False)))
        pipelines.append(("mlfo", "pyav", source, "+ colour, CPU", ours(paths, "pyav", True)))
        if hasattr(pyav, "SKIM"):  # this tree has the speed-ups: time it without them too
            pipelines.append(("mlfo", "pyav earlier", source, crop, ours(paths, "pyav", False, earlier=True)))
        pipelines.append(("mlfo", "pyav 2 threads", source, crop, ours(paths, "pyav", False, threads=2)))
        if has_decode_size:  # absent before this option existed (for a "before" run of an older tree)
            pipelines.append(("mlfo", f"pyav s{args.decode_size}", source, crop,
                              ours(paths, "pyav", False, decode_size=args.decode_size)))
        if source == "mp4 (H.264)":
            try:
                import torchcodec  # noqa: F401

                open_video(videos[0], "torchcodec").close()
                pipelines.append(("mlfo", "torchcodec", source, crop, ours(paths, "torchcodec", False)))
            except Exception as err:  # noqa: BLE001
                print(f"(torchcodec skipped: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})\n")
    if not args.no_reference:
        pipelines.append(("mlfo", "frames", "JPEG folders", crop, ours(folders, "frames", False)))
        pipelines.append(("mlfo", "frames", "JPEG folders", "+ colour, CPU", ours(folders, "frames", True)))
        pipelines.append(
            ("reference", "PIL per frame", "JPEG folders", "crop+flip+colour",
             lambda i: reference_sample(folders[i], args.clip_len, args.r_max, args.crop, rng))
        )
    return pipelines


def _report(pipelines, measured, no_reference: bool) -> None:
    """The table, and the per-core ratios of mlfo's PyAV rows to the reference pipeline."""
    rates = {}
    for (name, backend, source, work, _), (wall, per_core) in zip(pipelines, measured):
        rates[(name, backend, source, work)] = per_core
        print(f"{name:<10} {backend:<15} {source:<13} {work:<19} {wall:>10.2f} {per_core:>9.2f} {1000 / per_core:>8.1f}")
    print("\nsamples/s: wall clock, one process; per core: samples per CPU second of this process")
    if no_reference:
        return
    crop = "crop+flip (worker)"
    reference = rates[("reference", "PIL per frame", "JPEG folders", "crop+flip+colour")]
    ratio = lambda source, work: rates[("mlfo", "pyav", source, work)] / reference  # noqa: E731
    print(
        "\nratio per core, mlfo video files via PyAV / reference (JPEG folders + PIL per frame):\n"
        "  input          colour on training device (mlfo's design)   colour on this CPU core too\n"
        f"  H.264 mp4      {ratio('mp4 (H.264)', crop):>10.2f}x"
        f"{ratio('mp4 (H.264)', '+ colour, CPU'):>40.2f}x\n"
        f"  MPEG-4 avi     {ratio('avi (MPEG-4)', crop):>10.2f}x"
        f"{ratio('avi (MPEG-4)', '+ colour, CPU'):>40.2f}x"
    )


def main(argv=None) -> int:
    args = _parse(argv)
    torch.set_num_threads(1)
    if args.prepared:
        return run_prepared(args)
    seconds = args.seconds or (3.0 if args.quick else 10.0)
    num_frames = int(2 * args.clip_len * args.r_max) + 8
    print(f"preparing data in {args.work_dir} ...", file=sys.stderr, flush=True)
    videos, avis, folders = prepare_data(args.work_dir, 2, num_frames)
    print(
        f"{len(videos)} videos, 320x240, {num_frames} frames; T={args.clip_len}, r_max={args.r_max}, "
        f"crop {args.crop}; 1 process, 1 thread, torch {torch.__version__}\n"
    )
    pipelines = _pipelines(args, num_frames, videos, avis, folders)
    print(f"{'pipeline':<10} {'backend':<15} {'input':<13} {'augmentation':<19} {'samples/s':>10} "
          f"{'per core':>9} {'CPU ms':>8}")
    print(f"timing {len(pipelines)} pipelines, {seconds:.0f} s each in 5 interleaved turns ...", file=sys.stderr, flush=True)
    _report(pipelines, measure_interleaved(pipelines, len(videos), seconds), args.no_reference)
    return 0


if __name__ == "__main__":
    sys.exit(main())
