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

import contextlib
import datetime
import hashlib
import json
import os
import subprocess
from functools import lru_cache
from pathlib import Path

import numpy as np

from mlfo.errors import MLFOError
from mlfo.eval.aggregate import mean_dicts, mean_groups

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


def split_label(names: list[str]) -> str:
    """The protocol's ``split``: "train/test" without official splits, else the split(s)."""
    if names == ["default"]:
        return "train/test"
    return names[0] if len(names) == 1 else "mean of " + ", ".join(names)


def assemble_card(
    task: str,
    label: str,
    encoder: dict,
    per_split: dict[str, dict],
    protocol: dict,
    dataset: dict | None = None,
    *,
    groups: dict[str, dict] | None = None,
    caveats: dict | None = None,
    extra: dict | None = None,
) -> dict:
    """THE way an evaluation's results become a card, for every task.

    ``per_split``: split ("default" without official splits) -> metrics; ``groups``: split
    -> class group -> metrics. Metrics and groups are averaged over the splits (the
    per-split values kept under ``splits`` when there are several), the split label goes
    into the protocol, and ``caveats`` (split -> notes) are recorded when there are any.
    """
    names = list(per_split)
    splits = per_split if len(names) > 1 else {}
    mean_groups_ = mean_groups(list(groups.values())) if groups else {}
    fields = {"label": label, **(extra or {}), **({"caveats": caveats} if caveats else {})}
    return make_card(task, encoder, mean_dicts(list(per_split.values())), dict(protocol, split=split_label(names)),
                     dataset, splits, mean_groups_, fields)


def write_card(card: dict, out_dir: str | os.PathLike, name: str | None = None) -> Path:
    """Write ``<out_dir>/<name or task>.card.json`` atomically; returns the path. A folder
    that cannot be written is one line naming it (nothing is left behind)."""
    out_dir = Path(out_dir)
    path = out_dir / f"{name or card['task']}{CARD_SUFFIX}"
    tmp = path.with_suffix(".tmp")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(card, indent=2) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise MLFOError(f"{out_dir}: cannot write the eval card {path.name} "
                        f"({exc.strerror or exc})") from None
    return path


def read_card(path: str | os.PathLike) -> dict:
    """The card at ``path``, its fields checked: a file that is not a readable mlfo card,
    or a field of the wrong type, is one line naming the file and the field."""
    path = Path(path)
    try:
        card = json.loads(path.read_text())
    except OSError as exc:
        raise MLFOError(f"{path}: cannot read the eval card ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise MLFOError(f"{path}: not an mlfo eval card (not valid JSON: {exc})") from None
    if not isinstance(card, dict) or "mlfo_card" not in card:
        raise MLFOError(f"{path}: not an mlfo eval card (no 'mlfo_card' field)")
    check_card(card, path)
    return card


_INT, _STR, _OBJECT = (int, "an integer"), (str, "a string"), (dict, "an object")
_FIELDS = {  # field -> (required, (type, name)); the fields inside are checked below
    "mlfo_card": (True, _INT), "task": (True, _STR), "encoder": (True, _OBJECT), "metrics": (True, _OBJECT),
    "dataset": (False, _OBJECT), "protocol": (False, _OBJECT), "splits": (False, _OBJECT),
    "groups": (False, _OBJECT), "label": (False, _STR), "created": (False, _STR),
}


def _is_number(value) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def check_card(card: dict, path: str | os.PathLike) -> None:
    """Raise ``MLFOError("<path>: field '<name>' ...")`` for the first field of a wrong type."""
    def bad(field: str, need: str, value) -> MLFOError:
        return MLFOError(f"{path}: field '{field}' must be {need}, got {type(value).__name__} {value!r:.40}")

    for field, (required, (kind, need)) in _FIELDS.items():
        if field not in card:
            if required:
                raise MLFOError(f"{path}: field '{field}' is missing")
            continue
        if not isinstance(card[field], kind) or isinstance(card[field], bool):
            raise bad(field, need, card[field])
    if card["mlfo_card"] > CARD_VERSION:
        raise MLFOError(f"{path}: card version {card['mlfo_card']} is newer than this mlfo reads "
                        f"({CARD_VERSION}); upgrade mlfo")
    for field in ("name", "sha256"):
        if card["encoder"].get(field) is not None and not isinstance(card["encoder"][field], str):
            raise bad(f"encoder.{field}", "a string", card["encoder"][field])
    seed = card["encoder"].get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise bad("encoder.seed", "an integer", seed)
    if not isinstance((card.get("dataset") or {}).get("name", ""), str):
        raise bad("dataset.name", "a string", card["dataset"]["name"])
    tables = {"metrics": card["metrics"], **{f"splits.{k}": v for k, v in (card.get("splits") or {}).items()},
              **{f"groups.{k}": v for k, v in (card.get("groups") or {}).items()}}
    for where, table in tables.items():
        if not isinstance(table, dict):
            raise bad(where, "an object of metric values", table)
        for name, value in table.items():
            if not _is_number(value):
                raise bad(f"{where}.{name}", "a number", value)


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
