"""Eval cards and the Markdown report built from them."""

import json

import numpy as np
import pytest

from mlfo.errors import MLFOError
from mlfo.eval.cards import code_version, make_card, read_card, write_card
from mlfo.eval.report import build_report


def _card(name, sha, task, metrics, groups=None, created="2024-01-01T00:00:00"):
    card = make_card(task, {"name": name, "sha256": sha}, metrics, {"center": False}, {"name": "demo"},
                     groups=groups, extra={"label": task})
    card["created"] = created
    return card


def test_card_round_trip_is_plain_json(tmp_path):
    card = make_card("knn", {"name": "enc", "sha256": "ab" * 32}, {"top1": np.float32(50.0)},
                     {"k": np.int64(20), "views": (1, 2)}, groups={"motion": {"top1": 40.0}})
    path = write_card(card, tmp_path)
    assert path.name == "knn.card.json"
    back = read_card(path)
    assert back["metrics"]["top1"] == 50.0 and back["protocol"] == {"k": 20, "views": [1, 2]}
    assert back["code_version"]["mlfo"] == code_version()["mlfo"] and "created" in back
    (tmp_path / "other.card.json").write_text(json.dumps({"not": "a card"}))
    assert read_card(tmp_path / "other.card.json") is None


def test_report_rows_are_encoders_columns_are_metrics(tmp_path):
    write_card(_card("mlfo", "1" * 64, "retrieval", {"R@1": 40.0, "R@5": 60.0},
                     {"motion": {"R@1": 45.0, "R@5": 70.0}}), tmp_path / "a")
    write_card(_card("mlfo", "1" * 64, "knn", {"top1": 30.0}), tmp_path / "a")
    write_card(_card("random-init", None, "retrieval", {"R@1": 10.0, "R@5": 20.0}), tmp_path / "a" / "baselines" / "r")
    text, n = build_report(tmp_path)
    assert n == 3
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == ["encoder", "sha256", "dataset", "retrieval R@1", "retrieval R@5", "retrieval R@1 motion",
                      "knn top1"]
    rows = {r.split("|")[1].strip(): [c.strip() for c in r.strip("|").split("|")] for r in lines[1:]}
    assert rows["mlfo"] == ["mlfo", "11111111", "demo", "40.0", "60.0", "45.0", "30.0"]
    assert rows["random-init"] == ["random-init", "-", "demo", "10.0", "20.0", "-", "-"]
    assert "Superseded" not in text


def test_report_flags_a_cell_two_cards_claim(tmp_path):
    write_card(_card("mlfo", "1" * 64, "knn", {"top1": 30.0}, created="2024-01-01T00:00:00"), tmp_path / "old")
    write_card(_card("mlfo", "1" * 64, "knn", {"top1": 35.0}, created="2024-02-01T00:00:00"), tmp_path / "new")
    text, _ = build_report(tmp_path)
    assert "| 35.0 |" in text and "Superseded" in text and "new/knn.card.json" in text


def test_report_without_cards_is_a_user_error(tmp_path):
    with pytest.raises(MLFOError, match="no eval cards"):
        build_report(tmp_path)
