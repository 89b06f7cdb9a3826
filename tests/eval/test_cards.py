"""Eval cards and the Markdown report built from them."""

import json
import os

import numpy as np
import pytest

from mlfo.errors import MLFOError
from mlfo.eval.cards import code_version, make_card, read_card, write_card
from mlfo.eval.report import build_report, write_report


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
    with pytest.raises(MLFOError, match=r"other\.card\.json: not an mlfo eval card"):
        read_card(tmp_path / "other.card.json")


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


def test_report_refuses_a_card_it_cannot_read(tmp_path):
    """Not a table of 1 card with the other silently left out: one line naming the card."""
    write_card(_card("mlfo", "1" * 64, "knn", {"top1": 30.0}), tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "linear.card.json").write_text('{"mlfo_card": 1, "task": "linear", "metr')
    with pytest.raises(MLFOError, match=r"b/linear\.card\.json: not an mlfo eval card \(not valid JSON"):
        build_report(tmp_path)
    (tmp_path / "b" / "linear.card.json").write_text(json.dumps(["a list"]))
    with pytest.raises(MLFOError, match=r"b/linear\.card\.json: not an mlfo eval card"):
        build_report(tmp_path)


@pytest.mark.parametrize("field, value", [
    ("encoder", "mlfo"), ("metrics", [1, 2]), ("metrics", {"top1": "high"}), ("created", 5),
    ("groups", {"motion": 3}), ("groups", {"motion": {"top1": [1]}}), ("splits", {"split1": {"top1": True}}),
    ("task", None), ("mlfo_card", "1"), ("dataset", {"name": 3}), ("encoder", {"name": ["x"]}),
    ("encoder", {"name": "x", "seed": "0"}), ("protocol", "k=20"),
])
def test_a_card_with_a_wrong_typed_field_is_one_line_naming_file_and_field(tmp_path, field, value):
    card = _card("mlfo", "1" * 64, "knn", {"top1": 30.0}, groups={"motion": {"top1": 20.0}})
    card[field] = value
    (tmp_path / "knn.card.json").write_text(json.dumps(card))
    name = field + (".name" if field in ("dataset",) else "")
    with pytest.raises(MLFOError, match=rf"knn\.card\.json: field '{name}[.'a-z0-9]*"):
        build_report(tmp_path)
    del card[field]
    (tmp_path / "knn.card.json").write_text(json.dumps(card))
    if field in ("encoder", "metrics", "task", "mlfo_card"):
        with pytest.raises(MLFOError, match=f"field '{field}' is missing|no '{field}' field"):
            build_report(tmp_path)
    else:
        assert build_report(tmp_path)[1] == 1


def test_card_write_into_an_unwritable_folder_is_one_line(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    card = _card("mlfo", "1" * 64, "knn", {"top1": 30.0})
    with pytest.raises(MLFOError, match=r"file/cards: cannot write the eval card knn\.card\.json"):
        write_card(card, tmp_path / "file" / "cards")
    if os.geteuid() != 0:  # root writes into read-only folders
        (tmp_path / "ro").mkdir(mode=0o555)
        with pytest.raises(MLFOError, match=r"ro: cannot write the eval card"):
            write_card(card, tmp_path / "ro")
        assert list((tmp_path / "ro").iterdir()) == []


def test_report_never_replaces_a_report_md_it_did_not_write(tmp_path):
    write_card(_card("mlfo", "1" * 64, "knn", {"top1": 30.0}), tmp_path)
    (tmp_path / "report.md").write_text("my notes\n")
    with pytest.raises(MLFOError, match=r"report\.md: exists and is not an mlfo report"):
        write_report(tmp_path)
    assert (tmp_path / "report.md").read_text() == "my notes\n"
    (tmp_path / "report.md").unlink()
    write_report(tmp_path)
    assert write_report(tmp_path).read_text().startswith("# mlfo evaluation report")


def test_assemble_card_averages_splits_and_labels_them():
    from mlfo.eval.cards import assemble_card

    per_split = {"split1": {"top1": 40.0, "top5": 80.0}, "split2": {"top1": 50.0}}
    groups = {"split1": {"motion": {"top1": 30.0}}, "split2": {"motion": {"top1": 50.0}, "appearance": {"top1": 1.0}}}
    card = assemble_card("knn", "knn", {"name": "enc"}, per_split, {"k": 5}, {"name": "ucf"}, groups=groups,
                         caveats={"split2": {"note": 1}}, extra={"training": {}})
    assert card["metrics"] == {"top1": 45.0} and card["splits"] == per_split
    assert card["groups"] == {"motion": {"top1": 40.0}} and card["caveats"] == {"split2": {"note": 1}}
    assert card["protocol"] == {"k": 5, "split": "mean of split1, split2"} and card["label"] == "knn"
    one = assemble_card("finetune", "linear-e2e", {"name": "enc"}, {"default": {"top1": 40.0}}, {})
    assert one["protocol"]["split"] == "train/test" and one["splits"] == {} and "caveats" not in one
    assert one["task"] == "finetune" and one["label"] == "linear-e2e" and "groups" not in one
