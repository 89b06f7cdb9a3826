"""Issue 19, items 11 and 19 and the export decision: an encoder file's architecture record
is checked before anything is built, non-float tensors are refused for float weights, and
``mlfo export`` replaces only an encoder it wrote (or any file with --overwrite)."""

from __future__ import annotations

import json
import resource
import time

import pytest
import torch
from safetensors.torch import save_file

import mlfo
from mlfo.cli import main
from mlfo.errors import MLFOError
from mlfo.eval.encoders import resolve_encoder
from mlfo.models import build_backbone, export_torchvision_state_dict
from mlfo.train.export import FORMAT

ARCH = {"name": "r3d_small", "stem": "reference", "widths": [8, 16, 16, 32], "num_classes": None}


@pytest.fixture(scope="module")
def tensors() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {k: v.contiguous() for k, v in export_torchvision_state_dict(build_backbone(**ARCH)).items()}


def encoder_file(path, tensors, arch=ARCH, **extra):
    metadata = {"format": FORMAT, "arch": arch if isinstance(arch, str) else json.dumps(arch), **extra}
    save_file(tensors, str(path), metadata=metadata)
    return path


def test_a_well_formed_encoder_loads(tmp_path, tensors):
    module = mlfo.load_encoder(encoder_file(tmp_path / "ok.safetensors", tensors))
    assert torch.equal(module.state_dict()["stem.0.weight"], tensors["stem.0.weight"])


@pytest.mark.parametrize(
    "arch, named",
    [
        ({**ARCH, "widths": [2 ** 22] * 4}, "arch widths [4194304, 4194304, 4194304, 4194304] are not 4 integers"),
        ({**ARCH, "widths": ["8", "x", 16, 32]}, "arch widths ['8', 'x', 16, 32] are not 4 integers"),
        ({**ARCH, "widths": [8, 16, 16]}, "are not 4 integers"),
        ({**ARCH, "widths": [8.5, 16, 16, 32]}, "are not 4 integers"),
        ({**ARCH, "widths": [True, 16, 16, 32]}, "are not 4 integers"),
        ({**ARCH, "name": "resnet9000"}, "arch name 'resnet9000' is not one of"),
        ({**ARCH, "stem": ["x"]}, "arch stem \"['x']\" is not one of"),
        ({**ARCH, "num_classes": 10 ** 9}, "arch num_classes 1000000000 is not an integer"),
        ({**ARCH, "widths": [8, 16, 16, 64]}, "the recorded architecture (r3d, stem reference, widths [8, 16, 16, 64]"),
        ({**ARCH, "num_classes": 400}, "classes 400) is not the one its tensors hold"),
        ({**ARCH, "name": "r2plus1d_18"}, "is not the one its tensors hold (r3d, stem reference"),
        ([1, 2], "the 'arch' metadata is not a JSON object"),
    ],
)
def test_a_crafted_architecture_record_is_refused_before_building(tmp_path, tensors, arch, named):
    path = encoder_file(tmp_path / "crafted.safetensors", tensors, arch)
    peak, started = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.process_time()
    with pytest.raises(MLFOError) as err:
        mlfo.load_encoder(path)
    assert str(err.value).startswith(f"{path}: ") and named in str(err.value) and "\n" not in str(err.value)
    assert time.process_time() - started < 5  # nothing large was built
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 200_000  # KiB


@pytest.mark.parametrize("dtype", [torch.int8, torch.bool, torch.uint8, torch.int32])
def test_non_float_tensors_for_float_weights_are_refused(tmp_path, tensors, dtype):
    damaged = dict(tensors)
    damaged["stem.0.weight"] = (tensors["stem.0.weight"] * 100).to(dtype)
    path = encoder_file(tmp_path / "int.safetensors", damaged)
    name = str(dtype).replace("torch.", "")
    with pytest.raises(MLFOError, match=rf"int\.safetensors: stem\.0\.weight is a {name} tensor where the encoder "
                                        "has float weights: refused"):
        mlfo.load_encoder(path)
    with pytest.raises(MLFOError, match=rf"stem\.0\.weight is a {name} tensor"):
        resolve_encoder(str(path))  # what evaluation uses
    plain = tmp_path / "int.pt"
    torch.save(damaged, plain)  # a bare state dict, its architecture inferred
    with pytest.raises(MLFOError, match=rf"int\.pt: stem\.0\.weight is a {name} tensor"):
        mlfo.load_encoder(plain)


def test_half_precision_weights_still_load(tmp_path, tensors):
    half = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    module = mlfo.load_encoder(encoder_file(tmp_path / "half.safetensors", half))
    assert module.state_dict()["stem.0.weight"].dtype == torch.float32


def pretraining_checkpoint(path, tensors, arch=ARCH):
    torch.save({"method": {f"model.backbone.{k}": v for k, v in tensors.items()}, "encoder_arch": arch,
                "epoch": 1, "global_step": 5}, path)
    return path


def test_export_replaces_only_an_encoder_it_wrote(tmp_path, tensors, capsys):
    ckpt = pretraining_checkpoint(tmp_path / "last.pt", tensors)
    out = tmp_path / "notes.safetensors"
    out.write_text("my notes, not an encoder")
    assert main(["export", str(ckpt), str(out)]) == 2
    err = capsys.readouterr().err
    assert err == (f"mlfo: error: {out}: exists and is not an encoder mlfo exported; give another name, "
                   "or add --overwrite to replace it\n")
    assert out.read_text() == "my notes, not an encoder"
    assert main(["export", str(ckpt), str(out), "--overwrite"]) == 0
    assert torch.equal(mlfo.load_encoder(out).state_dict()["stem.0.weight"], tensors["stem.0.weight"])
    assert main(["export", str(ckpt), str(out)]) == 0  # mlfo's own export: replaced without a flag
    foreign = tmp_path / "foreign.safetensors"
    save_file(tensors, str(foreign))  # a safetensors file that mlfo did not write
    assert main(["export", str(ckpt), str(foreign)]) == 2 and "is not an encoder mlfo exported" in capsys.readouterr().err


def test_export_never_writes_over_its_checkpoint_or_from_a_crafted_one(tmp_path, tensors, capsys):
    ckpt = pretraining_checkpoint(tmp_path / "last.pt", tensors)
    before = ckpt.read_bytes()
    (tmp_path / "link.safetensors").symlink_to(ckpt)
    assert main(["export", str(ckpt), str(tmp_path / "link.safetensors"), "--overwrite"]) == 2
    assert "is the checkpoint being exported" in capsys.readouterr().err and ckpt.read_bytes() == before
    crafted = pretraining_checkpoint(tmp_path / "crafted.pt", tensors, {**ARCH, "widths": [10 ** 6] * 4})
    out = tmp_path / "enc.safetensors"
    assert main(["export", str(crafted), str(out)]) == 2
    assert "arch widths [1000000, 1000000, 1000000, 1000000] are not 4 integers" in capsys.readouterr().err
    assert not out.exists()


def test_plot_replaces_its_own_figure_but_never_the_metrics_a_png_of_the_users_or_another_file(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    rows = [{"epoch": 0, "step": i, "loss/total": 5.0 - i / 10, "acc/high": i / 20, "lr": 1e-3} for i in range(1, 8)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    metrics = (run / "metrics.jsonl").read_bytes()
    assert main(["plot", str(run), "--out", str(run / "metrics.jsonl")]) == 2
    assert "is the metrics file being plotted" in capsys.readouterr().err
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    assert main(["plot", str(run), "--out", str(notes)]) == 2
    assert capsys.readouterr().err == f"mlfo: error: {notes}: exists and is not a figure mlfo plot wrote; give another --out\n"
    assert (run / "metrics.jsonl").read_bytes() == metrics and notes.read_text() == "mine"
    png = tmp_path / "curves.png"
    assert main(["plot", str(run), "--out", str(png)]) == 0 and main(["plot", str(run), "--out", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    import matplotlib.pyplot as plt

    photo = tmp_path / "holiday.png"  # a PNG of the user's, written by matplotlib like ours
    plt.figure().savefig(photo)
    plt.close("all")
    before = photo.read_bytes()
    assert main(["plot", str(run), "--out", str(photo)]) == 2
    assert "holiday.png: exists and is not a figure mlfo plot wrote" in capsys.readouterr().err
    assert photo.read_bytes() == before
