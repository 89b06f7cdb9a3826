"""Every GPU path of mlfo in one command, and one table (at most 8 minutes on one H100 /
H200). Without a CUDA device it says so and exits 0.

    python benchmarks/gpu_check.py                  # the whole check
    python benchmarks/gpu_check.py --steps 10       # fewer timed steps
    python benchmarks/gpu_check.py --work-dir DIR   # keep the generated data and runs

It runs mlfo's own code, nothing re-implemented: r3d_18 on three 16x112x112 clips per
video, the Kinetics preset with every loss term and the queue on from the first step.
1. Data: the demo dataset rendered at 170x128 (H.264) and indexed; the engine's loader
   (its workers, pinned memory) is timed: loader samples/s.
2. Per setting - fp32, bf16, fp16 + GradScaler, bf16 + channels_last, the same compiled,
   bf16 + SyncBatchNorm with DDP under a one-process NCCL group, and the Kinetics preset's
   own combination (fp32 + SyncBatchNorm, no compile: the engine refuses compile with
   SyncBatchNorm) at the full and at half the local batch - the engine's Trainer
   is built from the config and, on one loader batch, runs the full MLFO step
   (``Trainer.train_step``: colour on the device, autocast, DDP, scaler, Adam) and the
   bare backbone's forward + backward on the same prepared clips: clips/s of both,
   peak memory, the losses finite and the first steps close to fp32's.
3. A pretraining checkpoint saved and resumed on the GPU; a fine-tune
   (``mlfo.eval.finetune``) of one epoch, run again on its folder so that it resumes.
4. Extraction (``mlfo.eval.extract.compute_features``) in fp32 and under bf16 autocast.
5. Where the machine has two GPUs: the Kinetics preset pretraining a few steps under
   ``torchrun --nproc_per_node 2`` (a second process-group member: NCCL, SyncBatchNorm
   across GPUs, DDP); with one GPU it says so.
The exit status is 1 when a check fails.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from method_step import mlfo_config

from mlfo.data.loading import build_loader
from mlfo.distributed import DistContext
from mlfo.errors import MLFOError
from mlfo.method import MLFOMethod
from mlfo.train import checkpoint as ckpt_io
from mlfo.train.engine import Trainer
from mlfo.train.parallel import to_channels_last
from mlfo.train.pretrain import build_trainer
from mlfo.train.seeding import seed_worker

BF16, FP16 = {"train.amp": '"bf16"'}, {"train.amp": '"fp16"'}
CL, COMPILE, SYNC_BN = {"train.channels_last": "true"}, {"train.compile": "true"}, {"train.sync_bn": "true"}
# (name, overrides, relative tolerance of the losses against fp32's at the first step - the
# same weights and batch: forward precision alone - and at the next two, after updates
# that precision has steered too: Adam moves every weight by ~lr whatever its gradient's size)
SETTINGS = [
    ("fp32", {}, (0.0, 0.0)),
    ("bf16", BF16, (0.03, 0.08)),
    ("fp16 + GradScaler", FP16, (0.01, 0.05)),
    ("bf16 + channels_last", {**BF16, **CL}, (0.03, 0.08)),
    ("bf16 + channels_last + compile", {**BF16, **CL, **COMPILE}, (0.03, 0.08)),
    ("bf16 + SyncBatchNorm (DDP, NCCL)", {**BF16, **SYNC_BN}, (0.03, 0.08)),
    # The Kinetics preset's own combination (amp off, no channels_last, no compile, SyncBatchNorm)
    # at the full local batch and at half of it (``HALF`` in the name: the batch's first half).
    ("kinetics preset (fp32 + SyncBatchNorm)", SYNC_BN, (1e-4, 0.02)),
    ("kinetics preset, HALF the local batch", SYNC_BN, (None, None)),
]
HALF = "HALF"
# Refused by the engine in one line (SyncBatchNorm graph-breaks under torch.compile).
REFUSED = ("SyncBatchNorm + compile", {**SYNC_BN, **COMPILE})
GOAL = ("bf16 + channels_last", 1.15)  # the MLFO step at most this many times the backbone's
COMPARED_STEPS = 3


class _OneProcessGroup(DistContext):
    """A one-process NCCL group run as the multi-GPU path: SyncBatchNorm, DDP, barriers and
    the engine's all-reduces, all for real (torch's SyncBatchNorm computes plain batch
    statistics when the group has one process)."""

    @property
    def distributed(self) -> bool:
        return True


@dataclass
class Row:
    name: str
    backbone_clips_s: float = float("nan")
    mlfo_clips_s: float = float("nan")
    peak_backbone_gib: float = float("nan")
    peak_mlfo_gib: float = float("nan")
    losses: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _describe(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:200] if text else ''}"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_gib(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def timed_steps(fn, steps: int, device: torch.device) -> float:
    """Seconds per call of ``fn`` over ``steps`` calls (the device drained before and after)."""
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    synchronize(device)
    return (time.perf_counter() - start) / steps


def run_setting(name: str, cfg, ctx: DistContext, batch: dict, reference: list[float] | None,
                tolerance: tuple[float, float],
                steps: int, out_dir: Path, compile_backend: str | None) -> tuple[Row, Trainer]:
    device = ctx.device
    row = Row(name)
    trainer = build_trainer(cfg, ctx, out_dir=out_dir)
    if HALF in name:
        batch = half_batch(batch)
    clips = 3 * batch["index"].shape[0]
    scales = []

    def mlfo_step():
        out = trainer.train_step(batch, 0, 0.0)
        trainer.global_step += 1  # as the engine's loop counts it (a checkpoint needs a trained step)
        row.losses.append(out["loss/total"])

    for _ in range(COMPARED_STEPS):  # also the warm-up: cuDNN's algorithm search, compilation
        scales.append(trainer.scaler.get_scale() if trainer.scaler.is_enabled() else 1.0)
        mlfo_step()
    reset_peak(device)
    seconds = timed_steps(mlfo_step, steps, device)
    row.mlfo_clips_s, row.peak_mlfo_gib = clips / seconds, peak_gib(device)

    x = trainer.method.prepare(batch, 0, device)
    x = (to_channels_last(x) if cfg.train.channels_last else x).flatten(0, 1)  # (3B, 3, T, S, S)
    encoder = trainer.method.encoder
    if cfg.train.compile:
        encoder = torch.compile(encoder, **({"backend": compile_backend} if compile_backend else {}))

    def backbone_step():
        trainer.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=trainer.autocast_dtype, enabled=trainer.autocast_dtype is not None):
            feature = encoder(x)  # (3B, C)
        feature.float().pow(2).mean().backward()

    for _ in range(2):
        backbone_step()
    reset_peak(device)
    seconds = timed_steps(backbone_step, steps, device)
    row.backbone_clips_s, row.peak_backbone_gib = clips / seconds, peak_gib(device)
    trainer.optimizer.zero_grad(set_to_none=True)

    if not all(np.isfinite(row.losses)):
        row.problems.append("non-finite loss")
    if reference is not None and tolerance[0] is not None:
        skipped = [k for k in range(1, COMPARED_STEPS) if scales[k] < scales[k - 1]]  # GradScaler skipped step k
        compared = min([COMPARED_STEPS, *skipped])
        for k in range(compared):
            relative = abs(row.losses[k] - reference[k]) / abs(reference[k])
            if relative > tolerance[min(k, 1)]:
                row.problems.append(f"step {k + 1} loss {row.losses[k]:.4f} vs fp32 {reference[k]:.4f} "
                                    f"({relative:.1%} > {tolerance[min(k, 1)]:.0%})")
    return row, trainer


def check_resume(trainer: Trainer, cfg, ctx: DistContext, out_dir: Path) -> str:
    """A pretraining checkpoint written and read back on this device (RNG states included)."""
    path = trainer.save(ckpt_io.LAST)
    again = build_trainer(cfg, ctx, out_dir=out_dir)
    again.resume(path)
    saved, loaded = trainer.method.state_dict(), again.method.state_dict()
    same = all(torch.equal(saved[k], loaded[k]) for k in saved)
    return f"saved after the timed steps and resumed on {ctx.device}: " + ("ok" if same else "FAIL (weights differ)")


def half_batch(batch: dict) -> dict:
    """The first half of a collated batch's videos (the second local-batch setting)."""
    n = max(1, batch["index"].shape[0] // 2)
    return {"clips": batch["clips"][:n], "index": batch["index"][:n], "skipped": []}


def check_refused(cfg, device: torch.device, out_dir: Path) -> str:
    """The pair the engine refuses: one line, before anything is built."""
    try:
        build_trainer(cfg, DistContext(device=device), out_dir=out_dir)
    except MLFOError as err:
        return f"refused in one line: {err}" if "\n" not in str(err) else f"FAIL (several lines: {err})"
    return "FAIL (not refused)"


def check_two_gpus(data: Path, work: Path, videos: int) -> str:
    """The Kinetics preset under torchrun on two GPUs: NCCL, SyncBatchNorm across GPUs, DDP."""
    import subprocess

    if torch.cuda.device_count() < 2:
        return f"not run: {torch.cuda.device_count()} GPU(s) on this machine (needs 2)"
    overrides = {"data.train": str(data / "train.csv"), "train.max_steps": 3, "train.progress": "false",
                 "train.tensorboard": "false", "data.batch_size": videos // 2}  # the preset otherwise
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", "-m",
           "mlfo.cli", "pretrain", "kinetics400_r3d18", *(f"{k}={v}" for k, v in overrides.items()),
           "--out", str(work / "runs" / "two_gpus")]
    start = time.perf_counter()
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    tail = (run.stderr.strip().splitlines() or [""])[-1]
    return (f"3 steps of {videos // 2} videos x 2 GPUs in {time.perf_counter() - start:.0f} s (start included): "
            + ("ok" if run.returncode == 0 else f"FAIL (exit {run.returncode}: {tail[:200]})"))


def loader_rate(trainer: Trainer, batches: int) -> tuple[float, int]:
    """Training samples (videos) per second of the engine's loader over the whole dataset."""
    d = trainer.cfg
    n, wanted = len(trainer.dataset), (batches + 1) * d.batch_size
    keys = [(epoch, i) for epoch in range(wanted // n + 1)
            for i in torch.randperm(n, generator=torch.Generator().manual_seed(epoch)).tolist()]  # every video, shuffled
    loader = build_loader(trainer.dataset, batch_size=d.batch_size, sampler=keys[:wanted],
                          num_workers=d.num_workers, pin_memory=trainer.device.type == "cuda", drop_last=True,
                          prefetch_factor=d.prefetch_factor, worker_init_fn=seed_worker)
    it = iter(loader)
    next(it)  # workers started, first batch out
    start, videos = time.perf_counter(), 0
    for batch in it:
        videos += int(batch["index"].shape[0])
    return videos / (time.perf_counter() - start), d.num_workers


def check_finetune(data: Path, out_dir: Path, device: torch.device, small: bool, workers: int) -> str:
    from mlfo.data.sources import load_index
    from mlfo.eval.finetune import FinetuneConfig, finetune
    from mlfo.eval.views import ViewConfig
    from mlfo.models import build_backbone

    train, test = load_index(data / "train.csv", progress=False), load_index(data / "test.csv", progress=False)
    frames, size = (4, 32) if small else (16, 112)
    cfg = FinetuneConfig(epochs=1, batch_size=8 if small else 16, clip_len=frames, crop_size=size, warmup_epochs=0,
                         device=device.type, num_workers=workers)
    views = ViewConfig(clip_len=frames, num_clips=2, resize=size + 16, crop_size=size)

    def run():
        torch.manual_seed(0)
        backbone = build_backbone("r3d_small", widths=[8, 16, 16, 32]) if small else build_backbone("r3d_18")
        return finetune(backbone, train.records, test.records, len(train.classes), out_dir, cfg, views,
                        progress=False)

    start = time.perf_counter()
    first = run()
    seconds = time.perf_counter() - start
    resumed = run()  # the folder holds a finished epoch: it resumes from last.pt and tests again
    same = np.allclose(first.probabilities, resumed.probabilities, atol=1e-3)
    return (f"1 epoch on {len(train.records)} videos in {seconds:.0f} s (top-1 {first.metrics.get('top1', 0):.1f}), "
            f"resumed and re-tested: " + ("ok" if same and resumed.history == first.history else "FAIL (predictions differ)"))


def check_extraction(data: Path, encoder: torch.nn.Module | None, device: torch.device, small: bool,
                     workers: int) -> str:
    from mlfo.data.sources import load_index
    from mlfo.eval.extract import compute_features
    from mlfo.eval.views import ViewConfig
    from mlfo.models import build_backbone

    if encoder is None:  # the fp32 setting failed: a fresh encoder still checks extraction
        encoder = build_backbone("r3d_small", widths=[8, 16, 16, 32]) if small else build_backbone("r3d_18")

    records = load_index(data / "test.csv", progress=False).records
    frames, size = (4, 32) if small else (16, 112)
    views = ViewConfig(clip_len=frames, num_clips=4, resize=size + 16, crop_size=size)

    def extract():
        return compute_features({"encoder": encoder}, views.dataset(records), batch_size=32,
                                views_per_video=views.views_per_video, num_workers=workers, device=device,
                                progress=False)

    full = extract()
    kinds = {"fp32": full}
    if device.type == "cuda":
        with torch.autocast("cuda", dtype=torch.bfloat16):
            kinds["bf16 autocast"] = extract()
    clips = len(full.kept) * views.views_per_video
    rates = ", ".join(f"{kind} {clips / r.seconds:.0f} clips/s" for kind, r in kinds.items())
    if "bf16 autocast" not in kinds:
        return f"{rates} (autocast needs CUDA)"
    a, b = full.features["encoder"]["high"], kinds["bf16 autocast"].features["encoder"]["high"]
    cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    ok = len(a) == len(b) == len(records) and cosine.min() > 0.99
    return f"{rates}; feature cosine bf16 vs fp32: min {cosine.min():.4f}: " + ("ok" if ok else "FAIL")


def print_table(rows: list[Row], geometry: str, videos: int, steps: int) -> None:
    print(f"\n{3 * videos} clips ({geometry}, {videos} videos x 3 clips) per step, {steps} timed steps")
    header = (f"{'setting':34s} {'backbone clips/s':>16s} {'MLFO clips/s':>13s} {'MLFO/backbone':>13s} "
              f"{'peak GiB bb / MLFO':>19s}  first losses (fp32 at the top)   check")
    print(header)
    print("-" * len(header))
    for r in rows:
        ratio = r.backbone_clips_s / r.mlfo_clips_s
        losses = " ".join(f"{v:.4f}" for v in r.losses[:COMPARED_STEPS])
        print(f"{r.name:34s} {r.backbone_clips_s:16.1f} {r.mlfo_clips_s:13.1f} {ratio:12.3f}x "
              f"{r.peak_backbone_gib:8.2f} / {r.peak_mlfo_gib:8.2f}  {losses:32s} "
              f"{'ok' if not r.problems else 'FAIL: ' + '; '.join(r.problems)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="timed steps per setting and kind")
    parser.add_argument("--videos", type=int, default=32, help="videos per step (x3 clips)")
    parser.add_argument("--work-dir", type=Path, help="where data and runs go (default: a temporary folder)")
    parser.add_argument("--cpu-smoke", action="store_true", help=argparse.SUPPRESS)  # the test suite's run
    args = parser.parse_args()
    small = args.cpu_smoke
    if not torch.cuda.is_available() and not small:
        print(f"gpu_check: no CUDA device on this machine (torch {torch.__version__}); nothing to check here. "
              "Run it where `python -c 'import torch; print(torch.cuda.is_available())'` prints True.")
        return 0
    if args.work_dir is None:
        with tempfile.TemporaryDirectory(prefix="mlfo-gpu-check-") as tmp:
            return check(args, Path(tmp), small)
    return check(args, args.work_dir, small)


@dataclass
class Setup:
    """What every part of the check shares: device, data, the geometry and its config."""
    small: bool
    work: Path
    steps: int
    device: torch.device
    cores: int
    workers: int
    videos: int
    data: Path
    size: dict
    name: str
    frames: int
    crop: int
    base: dict
    started: float = field(default_factory=time.perf_counter)
    index: object = None
    compile_backend: str | None = None

    def config(self, overrides: dict):
        return mlfo_config(self.name, self.frames, self.crop, self.videos, **{**self.base, **overrides})


def prepare(args, work: Path, small: bool) -> Setup:
    """The data (written and indexed before this process touches the GPU: its worker pools
    fork first) and the Kinetics preset's objective (K = 1000, a 3840-sample queue); a
    narrow net on CPU."""
    from mlfo.data.demo import generate_demo_dataset
    from mlfo.train.indexing import load_training_index

    cores = os.cpu_count() or 1
    videos, workers = (4 if small else args.videos), min(2 if small else 16, cores)
    size = {"num_frames": 20, "height": 48, "width": 48} if small else {"num_frames": 64, "height": 128, "width": 170}
    geometry = ({"backbone.widths": "[8,16,16,32]", "model.embed_dim": 16, "model.me_reduction": 4} if small
                else {"model.num_prototypes": 1000, "objective.queue_length": 3840})
    device = torch.device("cpu") if small else torch.device("cuda", 0)
    base = {"data.train": str(work / "data" / "train.csv"), "data.num_workers": workers, "train.progress": "false",
            "train.tensorboard": "false", "train.device": device.type, "checkpoint.every_steps": 0, **geometry}
    s = Setup(small, work, args.steps, device, cores, workers, videos, work / "data", size,
              *(("r3d_small", 4, 32) if small else ("r3d_18", 16, 112)), base)
    per_class = max(6, math.ceil(2.5 * videos / 11))  # 11 classes, 2/3 of them for training: > 1.5 batches
    generate_demo_dataset(s.data, seed=0, videos_per_class=per_class, workers=cores, **size)
    s.index = load_training_index(s.config({}).data, progress=False, workers=cores)
    print(f"gpu_check: {len(s.index.records)} training videos ready ({time.perf_counter() - s.started:.0f} s)",
          flush=True)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        props = torch.cuda.get_device_properties(device)
        print(f"gpu_check: {props.name} ({props.total_memory / 2**30:.0f} GiB), torch {torch.__version__}, "
              f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, {cores} CPU cores; fp32 "
              f"convolutions {'TF32' if torch.backends.cudnn.allow_tf32 else 'IEEE fp32'}", flush=True)
    if small:  # inductor needs minutes on a small CPU
        s.compile_backend = "aot_eager"
        real_compile = MLFOMethod.compile
        MLFOMethod.compile = lambda self: real_compile(self, backend="aot_eager")
    return s


@dataclass
class Results:
    rows: list = field(default_factory=list)
    reference: list | None = None
    batch: dict | None = None
    loader: tuple = (float("nan"), 0)  # videos/s, workers
    notes: list = field(default_factory=list)
    encoder: torch.nn.Module | None = None


def one_setting(s: Setup, r: Results, label: str, overrides: dict, tolerance) -> Row:
    """One row of the table; the first setting also gives the reference losses, the loader
    rate, the checkpoint resume and the encoder extraction uses."""
    cfg = s.config(overrides)
    group = cfg.train.sync_bn or label.startswith("DDP")
    ctx, trainer, out = DistContext(device=s.device), None, s.work / "runs" / str(len(r.rows))
    if group:
        backend = "nccl" if s.device.type == "cuda" else "gloo"
        store = s.work / f"store-{len(r.rows)}"
        store.unlink(missing_ok=True)  # a file store left by an earlier run would not rendezvous
        dist.init_process_group(backend, init_method=f"file://{store}", rank=0, world_size=1,
                                **({"device_id": s.device} if backend == "nccl" else {}))
        ctx = _OneProcessGroup(device=s.device)
    try:
        if r.batch is None:
            trainer = build_trainer(cfg, ctx, index=s.index, out_dir=out)
            r.batch = next(iter(trainer.loader))  # one real batch (pinned on CUDA) for every setting
            r.loader = loader_rate(trainer, batches=8 if s.small else 20)
            trainer = None
        row, trainer = run_setting(label, cfg, ctx, r.batch, r.reference, tolerance, s.steps, out, s.compile_backend)
        if r.reference is None:
            r.reference = row.losses[:COMPARED_STEPS]
            r.notes.append("pretraining checkpoint: " + check_resume(trainer, cfg, ctx, s.work / "runs" / "resumed"))
            r.encoder = trainer.method.encoder
    except Exception as err:  # noqa: BLE001 - one setting failing must not hide the others
        row = Row(label, problems=[_describe(err)])
    finally:
        trainer = None
        gc.collect()
        if group and dist.is_initialized():
            dist.destroy_process_group()
        if s.device.type == "cuda":
            torch.cuda.empty_cache()
        torch._dynamo.reset()
    return row


def print_summary(s: Setup, r: Results) -> None:
    print_table(r.rows, f"{s.name} at {s.frames}x{s.crop}x{s.crop}", s.videos, s.steps)
    by_name = {row.name: row for row in r.rows}
    if GOAL[0] in by_name and not by_name[GOAL[0]].problems:
        goal = by_name[GOAL[0]]
        ratio = goal.backbone_clips_s / goal.mlfo_clips_s
        print(f"goal: MLFO step at most {GOAL[1]}x the bare backbone's at {GOAL[0]}: {ratio:.3f}x "
              f"({'met' if ratio <= GOAL[1] else 'NOT met'})")
    step_videos = (by_name.get(GOAL[0]) or r.rows[0]).mlfo_clips_s / 3
    if r.batch is not None:
        samples_s, n_workers = r.loader
        print(f"loader: {n_workers} workers, {samples_s:.1f} videos/s ({3 * samples_s:.0f} clips/s) on demo videos "
              f"({s.size['width']}x{s.size['height']} H.264); the "
              f"{GOAL[0] if GOAL[0] in by_name else r.rows[0].name} "
              f"MLFO step takes {step_videos:.1f} videos/s: loader / step = {samples_s / step_videos:.2f}")
    for note in r.notes:
        print(note)


def check(args, work: Path, small: bool) -> int:
    s = prepare(args, work, small)
    settings = SETTINGS
    if small:  # CPU: fp32 only; the multi-process path through a one-process gloo group
        settings = [("fp32", {}, (0.0, 0.0)), ("channels_last", CL, (1e-4, 0.02)),
                    ("channels_last + compile", {**CL, **COMPILE}, (1e-4, 0.02)), ("DDP (gloo)", {}, (1e-6, 1e-5))]
    r = Results()
    for label, overrides, tolerance in settings:
        r.rows.append(one_setting(s, r, label, overrides, tolerance))
        print(f"gpu_check: {label} done ({time.perf_counter() - s.started:.0f} s)", flush=True)
    print_summary(s, r)
    checks = (("fine-tune", lambda: check_finetune(s.data, work / "finetune", s.device, small, s.workers)),
              ("extraction", lambda: check_extraction(s.data, r.encoder, s.device, small, s.workers)),
              (REFUSED[0], lambda: check_refused(s.config(REFUSED[1]), s.device, work / "runs" / "refused")),
              ("second process-group member", lambda: check_two_gpus(s.data, work, s.videos)))
    failed = any(row.problems for row in r.rows) or any("FAIL" in n for n in r.notes)
    for label, fn in checks:
        try:
            result = fn()
        except Exception as err:  # noqa: BLE001 - reported in the table's notes, the run goes on
            result = f"FAIL: {_describe(err)}"
        print(f"{label}: {result}", flush=True)
        failed |= "FAIL" in result
    print(f"gpu_check: {'FAILED' if failed else 'all checks passed'} in {time.perf_counter() - s.started:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
