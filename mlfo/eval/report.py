"""``mlfo report DIR``: every eval card under DIR in one Markdown table.

Rows are encoders (name + checkpoint hash + dataset), columns are "<eval> <metric>", so a
pretrained encoder and its random-init / supervised baselines line up by the same protocol.
"""

from __future__ import annotations

import os
from pathlib import Path

from mlfo.errors import MLFOError
from mlfo.eval.cards import CARD_SUFFIX, format_table, read_card

# Per-group numbers are shown only for the headline metric of each eval, to keep the table narrow.
REPORT_TITLE = "# mlfo evaluation report"

HEADLINE = {"retrieval": "R@1", "knn": "top1", "linear": "top1", "linear-e2e": "top1", "finetune": "top1"}


def collect_cards(directory: str | os.PathLike) -> list[tuple[Path, dict]]:
    """Every ``*.card.json`` under ``directory``, each checked: one that cannot be read, is
    not a card or has a field of the wrong type stops the report with one line naming it
    (a table that silently leaves a card out would look complete)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise MLFOError(f"{directory}: not a directory")
    return [(path, read_card(path)) for path in sorted(directory.rglob(f"*{CARD_SUFFIX}"))]


def row_key(card: dict) -> tuple[str, str, str]:
    enc = card.get("encoder", {})
    sha = (enc.get("sha256") or "")[:8] or (f"seed {enc['seed']}" if enc.get("seed") is not None else "")
    return enc.get("name", "?"), sha, card.get("dataset", {}).get("name", "")


def build_report(directory: str | os.PathLike) -> tuple[str, int]:
    """Markdown report text and the number of cards it summarises."""
    cards = collect_cards(directory)
    if not cards:
        raise MLFOError(f"{directory}: no eval cards (*{CARD_SUFFIX}) found")
    rows: dict[tuple, dict] = {}
    columns: list[str] = []
    sources: list[str] = []
    cell_source: dict[tuple, str] = {}
    replaced: list[str] = []
    # Oldest first, so a newer card of the same eval overwrites an older one.
    for path, card in sorted(cards, key=lambda pc: pc[1].get("created", "")):
        key = row_key(card)
        row = rows.setdefault(key, {"encoder": key[0], "sha256": key[1] or "-", "dataset": key[2] or "-"})
        label = card.get("label", card.get("task", "?"))
        metrics = dict(card.get("metrics", {}))
        for group, values in (card.get("groups") or {}).items():
            head = HEADLINE.get(card.get("task"), next(iter(values), None))
            if head in values:
                metrics[f"{head} {group}"] = values[head]
        where = str(path.relative_to(directory))
        for name, value in metrics.items():
            col = f"{label} {name}"
            if (key, col) in cell_source and cell_source[(key, col)] != where:
                replaced.append(f"- {key[0]} / {label}: `{where}` replaces `{cell_source[(key, col)]}`")
            cell_source[(key, col)] = where
            row[col] = value
            if col not in columns:
                columns.append(col)
        sources.append(f"- `{where}`: {label}, {card['encoder'].get('name', '?')}, "
                       f"{_protocol_brief(card)}")
    # Columns grouped by eval in a fixed order (cheapest read-out first), metrics in card order.
    order, seen = list(HEADLINE), {c: i for i, c in enumerate(columns)}
    columns.sort(key=lambda col: (next((i for i, t in enumerate(order) if col.split(" ")[0] == t),
                                       next((i for i, t in enumerate(order) if col.startswith(t)), len(order))),
                                  col.split(" ")[0], seen[col]))
    table = format_table(list(rows.values()), ["encoder", "sha256", "dataset"] + columns, markdown=True)
    text = (
        f"{REPORT_TITLE}\n\n{table}\n\n"
        "Metrics in percent; `sha256` is the first 8 hex digits of the checkpoint file's hash\n"
        "(the seed for a random-init encoder).\n"
        "Multi-split numbers are the mean over splits (per-split values are in the cards).\n\n"
        "## Cards\n\n" + "\n".join(sources) + "\n"
    )
    if replaced:
        text += ("\n## Superseded\n\nThese cards evaluate the same encoder with the same eval under another "
                 "folder; the table shows the newest (check that their protocols match):\n\n"
                 + "\n".join(dict.fromkeys(replaced)) + "\n")
    return text, len(cards)


def _protocol_brief(card: dict) -> str:
    p = card.get("protocol", {})
    keys = ["split", "views", "center", "k", "temperature", "epochs", "selection", "level"]
    parts = [f"{k}={p[k]}" for k in keys if k in p and p[k] is not None]
    return ", ".join(parts) or "protocol in card"


def write_report(directory: str | os.PathLike) -> Path:
    """Write ``directory/report.md`` (only over a report mlfo wrote) and print it."""
    text, n = build_report(directory)
    path = Path(directory) / "report.md"
    if path.is_file() and not path.read_text(errors="replace").startswith("# mlfo "):  # this or mlfo demo's
        raise MLFOError(f"{path}: exists and is not an mlfo report; move it away to write the report")
    try:
        path.write_text(text)
    except OSError as exc:
        raise MLFOError(f"{path.parent}: cannot write report.md ({exc.strerror or exc})") from None
    print(text)
    print(f"mlfo: {n} card{'' if n == 1 else 's'} -> {path}")
    return path
