"""Issue 19, items 1, 9 and 15: a path is the text the user typed (in ``--out``, in an
override and in a YAML file), a key given twice, an alias and a Python tag are refused in
one line naming the file, the key or the line."""

from __future__ import annotations

import time

import pytest

import mlfo.train.pretrain
from mlfo.cli import main
from mlfo.config import load_config
from mlfo.errors import MLFOError

TEXTS = ["0012", "1.10", "1_000", "exp #2", "0x1F", "1e3", "true", "[a]"]


@pytest.mark.parametrize("text", TEXTS)
def test_text_overrides_keep_the_text_typed(text):
    cfg = load_config("demo_cpu", [f"data.train={text}", f"train.out_dir={text}", f"data.split_dir={text}"])
    assert (cfg.data.train, cfg.train.out_dir, cfg.data.split_dir) == (text, text, text)


def test_other_overrides_are_still_yaml_values_and_choices_are_names():
    cfg = load_config("demo_cpu", ["optim.lr_decay_epochs=[1, 2]", "optim.lr=1e-3", "train.amp=off",
                                   "data.split_dir=none", "model.fine_steps={low: 4}"])
    assert cfg.optim.lr_decay_epochs == [1, 2] and cfg.optim.lr == 1e-3
    assert cfg.train.amp == "off"  # YAML alone reads `off` as False, refused by the choices before
    assert cfg.data.split_dir is None and cfg.model.fine_steps["low"] == 4


def test_text_fields_of_a_yaml_file_keep_their_text(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("data:\n  train: 0012\n  split_dir: null\ntrain:\n  out_dir: 1.10\n  amp: off\n"
                    "optim:\n  lr: 1.0e-3\n  lr_decay_epochs: [5]\n")
    cfg = load_config(path)
    assert (cfg.data.train, cfg.train.out_dir, cfg.train.amp) == ("0012", "1.10", "off")
    assert cfg.data.split_dir is None and cfg.optim.lr == 1e-3 and cfg.optim.lr_decay_epochs == [5]


@pytest.mark.parametrize("out", ["0012", "1.10", "1_000", "exp #2"])
def test_out_is_the_folder_typed_in_any_position(out, monkeypatch, tmp_path):
    seen = {}

    def fake_pretrain(cfg, resume=None, overwrite=False):
        seen.update(out=cfg.train.out_dir, lr=cfg.optim.lr, epochs=cfg.train.epochs, resume=resume)
        return mlfo.train.engine.TrainResult(tmp_path, None, 0, 0)

    monkeypatch.setattr(mlfo.train.pretrain, "pretrain", fake_pretrain)
    assert main(["pretrain", "demo_cpu", "optim.lr=0.5", "--out", out, "train.epochs=3", "--resume", "auto"]) == 0
    assert seen == {"out": out, "lr": 0.5, "epochs": 3, "resume": "auto"}


@pytest.mark.parametrize(
    "text, named",
    [
        ("optim:\n  lr: 0.1\ntrain:\n  epochs: 2\noptim:\n  lr_decay_epochs: [5]\n",
         "optim: given twice (lines 1 and 5)"),
        ("optim:\n  lr: 0.1\n  lr: 0.2\n", "optim.lr: given twice (lines 2 and 3)"),
        ("model:\n  fine_steps: {low: 1, low: 2}\n", "model.fine_steps.low: given twice"),
    ],
)
def test_a_key_given_twice_is_refused_naming_it(tmp_path, text, named):
    path = tmp_path / "twice.yaml"
    path.write_text(text)
    with pytest.raises(MLFOError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: {named}") and "\n" not in str(err.value)


def alias_bomb() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    lines.append("train: {out_dir: *i}")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_at_once(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb())
    assert path.stat().st_size < 600
    started = time.process_time()
    with pytest.raises(MLFOError, match=r"bomb\.yaml: line 2: YAML aliases \(\*a\) are refused"):
        load_config(path)
    assert time.process_time() - started < 5
    with pytest.raises(MLFOError, match=r"^optim\.lr_decay_epochs: line 1: YAML aliases \(\*x\) are refused"):
        load_config("demo_cpu", ["optim.lr_decay_epochs=[&x 1, *x]"])


def test_a_python_tag_is_refused_not_called_invalid(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("train:\n  out_dir: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(MLFOError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(f"{path}: line 2: refused the tag !!python/object/apply:os.system")
    assert "not valid YAML" not in message
    with pytest.raises(MLFOError, match=r"optim\.lr: line 1: refused the tag !!python/name:os\.system"):
        load_config("demo_cpu", ["optim.lr=!!python/name:os.system"])


@pytest.mark.parametrize(
    "text, named",
    [
        ("optim:\n  <<: {lr: 0.1}\n", "line 2: merge keys (<<) are refused"),
        ("optim:\n  ? [1, 2]\n  : 3\n", "line 2: a key must be a name"),
        ("train: !custom 3\n", "line 1: unknown YAML tag !custom"),
    ],
)
def test_other_yaml_constructs_a_config_never_needs_are_one_line(tmp_path, text, named):
    path = tmp_path / "odd.yaml"
    path.write_text(text)
    with pytest.raises(MLFOError) as err:
        load_config(path)
    assert str(err.value) == f"{path}: {named}" or str(err.value).startswith(f"{path}: {named}")
