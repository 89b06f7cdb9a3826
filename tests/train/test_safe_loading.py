"""Files are data, never code: a crafted .pt whose unpickling would run code is refused
with one line naming it by every entry point that reads a checkpoint or an encoder, and
the code never runs (its marker file never appears)."""

from __future__ import annotations

import builtins
import shutil
from pathlib import Path

import pytest
import torch

import mlfo
from mlfo.cli import main
from mlfo.errors import MLFOError
from train_helpers import tiny_overrides

VIEWS = ["--clip-len", "4", "--resize", "32", "--crop-size", "32", "--clips", "1", "--workers", "0", "--quiet"]


class Payload:
    """Unpickling this calls exec: what a malicious shared checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.exec, (f"open({self.marker!r}, 'w').write('code ran')",)


@pytest.fixture
def evil(tmp_path) -> tuple[Path, Path]:
    marker = tmp_path / "CODE_RAN"
    path = tmp_path / "shared" / "evil.pt"
    path.parent.mkdir()
    torch.save({"method": {}, "encoder_arch": {"name": "r3d_small"}, "note": Payload(marker)}, path)
    return path, marker


def refused(argv, path: Path, marker: Path, capsys) -> None:
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.count("mlfo: error:") == 1 and err.endswith(
        f"{path}: refused: it holds Python objects other than tensors and plain data, and loading it "
        "could run code from the file\n"), err
    assert not marker.exists(), "code from the file ran"


def test_every_entry_point_refuses_a_pickle_that_would_run_code(evil, tiny_data, tmp_path, capsys):
    path, marker = evil
    data = tiny_data.parent  # train.csv + test.csv: what extract and finetune evaluate
    refused(["export", path, tmp_path / "enc.safetensors"], path, marker, capsys)
    refused(["extract", path, data, tmp_path / "f1", *VIEWS], path, marker, capsys)
    refused(["extract", "random", data, tmp_path / "f2", "--arch", "r3d_small",
             "--baseline", f"torchvision:{path}", *VIEWS], path, marker, capsys)
    refused(["eval", "finetune", path, data, tmp_path / "ft1", *VIEWS], path, marker, capsys)
    # A fine-tuning folder whose last.pt was swapped for the crafted file: --resume auto reads it.
    ft = tmp_path / "ft2"
    ft.mkdir()
    shutil.copy(path, ft / "last.pt")
    refused(["eval", "finetune", "random", data, ft, "--arch", "r3d_small", "--resume", "auto", *VIEWS],
            ft / "last.pt", marker, capsys)
    # Pretraining resumes: from the run folder's last.pt, or from a path.
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(path, run / "last.pt")
    refused(["pretrain", "demo_cpu", *tiny_overrides(tiny_data, run), "--resume", "auto"], run / "last.pt",
            marker, capsys)
    refused(["pretrain", "demo_cpu", *tiny_overrides(tiny_data, tmp_path / "run2"), "--resume", path],
            path, marker, capsys)
    with pytest.raises(MLFOError, match="refused: it holds Python objects") as err:
        mlfo.load_encoder(path)
    assert "\n" not in str(err.value) and not marker.exists()


def test_the_payload_does_run_code_when_unpickled_unsafely(evil):
    path, marker = evil  # the test above can fail: this file really carries code
    torch.load(path, weights_only=False)
    assert marker.read_text() == "code ran"
