"""Eval cards: one JSON file per evaluation with the numbers and the full protocol.

Published video SSL numbers often do not reproduce because the protocol is implicit
(views, crops, centring, which epoch was reported). A card makes it explicit and ties
the numbers to the exact checkpoint (sha256) and code version that produced them.

Card layout (``CARD_VERSION`` 1)::

    {"mlfo_card": 1, "task": "retrieval" | "knn" | "linear" | "finetune" | ...,
     "encoder": {"name", "checkpoint", "sha256", "arch", ...},
     "dataset": {...}, "protocol": {...},
     "metrics": {name: value, ...},          # mean over splits when there are several
     "splits": {"split1": {name: value}, ...},
     "groups": {"motion": {name: value}, ...} (optional),
     "code_version": {"mlfo", "git_commit", "git_dirty"}, "created": ISO time}
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import subprocess
from functools import lru_cache
from pathlib import Path

import numpy as np

CARD_VERSION = 1
CARD_SUFFIX = ".card.json"


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@lru_cache(maxsize=1)
def code_version() -> dict:
    """mlfo's version plus the git commit of the source tree when it is a checkout."""
    import mlfo

    info = {"mlfo": mlfo.__version__, "git_commit": None, "git_dirty": None}
    repo = Path(mlfo.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        if commit.returncode == 0:
            info["git_commit"] = commit.stdout.strip()
            dirty = subprocess.run(
                ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True, text=True, timeout=5,
            )
            info["git_dirty"] = bool(dirty.stdout.strip()) if dirty.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def make_card(
    task: str,
    encoder: dict,
    metrics: dict,
    protocol: dict,
    dataset: dict | None = None,
    splits: dict | None = None,
    groups: dict | None = None,
    extra: dict | None = None,
) -> dict:
    card = {
        "mlfo_card": CARD_VERSION,
        "task": task,
        "encoder": encoder,
        "dataset": dataset or {},
        "protocol": protocol,
        "metrics": metrics,
        "splits": splits or {},
        "code_version": code_version(),
        "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    if groups:
        card["groups"] = groups
    if extra:
        card.update(extra)
    return _jsonable(card)


def write_card(card: dict, out_dir: str | os.PathLike, name: str | None = None) -> Path:
    """Write ``<out_dir>/<name or task>.card.json`` atomically; returns the path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name or card['task']}{CARD_SUFFIX}"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(card, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def read_card(path: str | os.PathLike) -> dict | None:
    """The card at ``path``, or None when it is not an mlfo card."""
    try:
        card = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return card if isinstance(card, dict) and "mlfo_card" in card else None


def format_table(rows: list[dict], columns: list[str], markdown: bool = False) -> str:
    """A small text (or Markdown) table; floats with one decimal."""

    def cell(v):
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.1f}"
        return str(v)

    body = [[cell(r.get(c)) for c in columns] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(lines)
    widths = [max(len(c), *(len(r[i]) for r in body)) if body else len(c) for i, c in enumerate(columns)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*columns), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*r) for r in body]
    return "\n".join(lines)


def card_summary_row(card: dict) -> dict:
    """Flat row of one card for the printed table: encoder, metrics (mean over splits),
    and per class group the headline (first) metric only."""
    row = {"encoder": card["encoder"].get("name", "?")}
    for name, value in card.get("metrics", {}).items():
        row[name] = value
    for group, values in (card.get("groups") or {}).items():
        if values:
            name = next(iter(values))
            row[f"{name} {group}"] = values[name]
    return row


def print_cards(cards: list[dict]) -> str:
    """Print (and return) one table comparing the cards of one task."""
    rows = [card_summary_row(c) for c in cards]
    columns = ["encoder"]
    for r in rows:
        columns += [k for k in r if k not in columns]
    text = format_table(rows, columns)
    print(text)
    return text
