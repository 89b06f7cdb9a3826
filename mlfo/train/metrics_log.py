"""Per-step metrics: one JSON line per optimizer step, mirrored to TensorBoard.

The JSONL file is the source of truth (``mlfo plot`` reads it, tests compare it); on
resume the lines past the checkpoint's step are dropped so that the file reads as one
uninterrupted run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

METRICS_FILE = "metrics.jsonl"
# Keys that describe where a line sits, not a quantity to plot.
META_KEYS = ("epoch", "step", "step_in_epoch", "time", "videos", "skipped")


def read_metrics(path: str | Path) -> list[dict]:
    """All complete lines of a metrics file (a torn last line from a killed run is ignored)."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    rows = []
    if not path.is_file():
        return rows
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def truncate_metrics(path: str | Path, last_step: int) -> None:
    """Keep only the lines with ``step <= last_step`` (the ones the checkpoint contains)."""
    path = Path(path)
    if not path.is_file():
        return
    rows = [r for r in read_metrics(path) if r.get("step", 0) <= last_step]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


class MetricsLogger:
    """Appends JSON lines and TensorBoard scalars; a no-op object on non-main ranks."""

    def __init__(self, out_dir: str | Path | None, tensorboard: bool = True, purge_step: int | None = None):
        """``purge_step``: TensorBoard discards the folder's events from this step on (a
        resumed run logs them again)."""
        self.enabled = out_dir is not None
        self.writer = None
        self.file = None
        if not self.enabled:
            return
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        self.file = open(out_dir / METRICS_FILE, "a", buffering=1)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(out_dir / "tensorboard"), purge_step=purge_step)

    def log(self, row: dict) -> None:
        if not self.enabled:
            return
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
        self.file.write(json.dumps(clean) + "\n")
        self.file.flush()
        if self.writer is not None:
            step = row["step"]
            for key, value in row.items():
                if key in META_KEYS or not isinstance(value, (int, float)) or isinstance(value, bool):
                    continue
                tag = key if "/" in key else f"train/{key}"  # objective logs: "loss/high", "acc/high"
                self.writer.add_scalar(tag, value, step)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None
