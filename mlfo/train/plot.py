"""``mlfo plot RUN``: the loss terms and accuracies of a run's metrics.jsonl, as a PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlfo.errors import MLFOError
from mlfo.train.metrics_log import META_KEYS, METRICS_FILE, read_metrics


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Moving average that ignores NaNs (missing or non-finite entries)."""
    if window <= 1 or len(values) < window:
        return values
    ok = np.isfinite(values)
    kernel = np.ones(window)
    num = np.convolve(np.where(ok, values, 0.0), kernel, mode="same")
    den = np.convolve(ok.astype(float), kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


PLOT_SOFTWARE = "mlfo plot"


def plot_run(run: str | Path, out: str | Path | None = None, smooth: int = 0) -> Path:
    """Draw every loss term, every accuracy, other logged values (queue size, ...) and the
    learning rate, one panel each, against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = Path(run)
    metrics = run / METRICS_FILE if run.is_dir() else run
    rows = read_metrics(metrics)
    if not rows:
        raise MLFOError(f"{metrics}: no metrics to plot (is this a pretraining run folder?)")
    keys = sorted({k for r in rows for k, v in r.items() if k not in META_KEYS and (isinstance(v, (int, float)) or v is None) and not isinstance(v, bool)})
    acc_keys = [k for k in keys if "acc" in k]
    loss_keys = [k for k in keys if k.startswith("loss") and k not in acc_keys]
    health_keys = [k for k in keys if k.startswith("health/")]  # logged every train.health_every steps
    other_keys = [k for k in keys if k not in acc_keys + loss_keys + health_keys and k != "lr"]  # queue size, ...
    steps = np.array([r.get("step", i) for i, r in enumerate(rows)], dtype=float)
    window = smooth or max(1, len(rows) // 50)

    def series(key):
        return np.array([np.nan if r.get(key) is None else float(r[key]) for r in rows])

    panels = [("loss terms", loss_keys), ("accuracies", acc_keys), ("embedding health (prototype queue)", health_keys),
              ("other", other_keys),
              ("learning rate", ["lr"] if "lr" in keys else [])]
    panels = [p for p in panels if p[1]]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 3.2 * len(panels)), sharex=True, squeeze=False)
    for ax, (title, names) in zip(axes[:, 0], panels):
        for name in names:
            y = series(name)
            if name in health_keys:  # sparse: the logged points themselves, joined
                ok = np.isfinite(y)
                ax.plot(steps[ok], y[ok], "o-", label=name, linewidth=1.2, markersize=3)
                continue
            ax.plot(steps, _smooth(y, window) if name != "lr" else y, label=name, linewidth=1.2)
        ax.set_title(title)
        if names is health_keys:
            ax.set_ylabel("RankMe")  # bounded by the queue's rows while it fills
        ax.grid(alpha=0.3)
        if len(names) > 1:
            ax.legend(fontsize=7, ncol=3)
    axes[-1, 0].set_xlabel("step")
    fig.suptitle(f"{run.name}  (moving average over {window} steps)" if window > 1 else run.name)
    fig.tight_layout()
    out = Path(out) if out else (run if run.is_dir() else run.parent) / "metrics.png"
    fig.savefig(out, dpi=110, metadata={"Software": PLOT_SOFTWARE})  # how --out knows its own figure
    plt.close(fig)
    return out


def written_by_plot(path: str | Path) -> bool:
    """Whether ``path`` is a PNG that ``plot_run`` wrote (its tEXt Software chunk)."""
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    return head.startswith(b"\x89PNG\r\n\x1a\n") and b"tEXtSoftware\x00" + PLOT_SOFTWARE.encode() in head
