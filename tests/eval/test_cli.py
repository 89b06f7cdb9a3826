"""Every evaluation command end to end on a tiny demo dataset with a tiny r3d_small."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mlfo.cli import main
from mlfo.eval.features import load_feature_set
from mlfo.eval.knn import knn_predict
from mlfo.eval.retrieval import recall_at_k
from mlfo.models.backbones import build_backbone
from mlfo.models.torchvision_compat import export_torchvision_state_dict

# 4-frame 32x32 clips keep an r3d_small forward pass at a few milliseconds.
VIEWS = ["--clip-len", "4", "--resize", "32", "--crop-size", "32", "--workers", "0", "--quiet"]


def run(*argv) -> int:
    return main([str(a) for a in argv])


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    from mlfo.data.demo import generate_demo_dataset

    return generate_demo_dataset(tmp_path_factory.mktemp("demo") / "data", seed=0, videos_per_class=3,
                                 num_frames=20, height=32, width=32, workers=1)


@pytest.fixture(scope="session")
def encoder_file(tmp_path_factory):
    """An exported encoder ({arch, state_dict}) of a seeded r3d_small."""
    torch.manual_seed(1)
    net = build_backbone("r3d_small")
    path = tmp_path_factory.mktemp("enc") / "encoder.pt"
    torch.save({"arch": net.arch, "state_dict": export_torchvision_state_dict(net), "source": "test"}, path)
    return path


@pytest.fixture(scope="session")
def torchvision_file(tmp_path_factory):
    """A bare torchvision-named state dict (torchvision stem), as a supervised checkpoint would be."""
    torch.manual_seed(2)
    net = build_backbone("r3d_small", stem="torchvision")
    path = tmp_path_factory.mktemp("tv") / "r3d_small_tv.pth"
    torch.save(export_torchvision_state_dict(net), path)
    return path


@pytest.fixture(scope="session")
def feats(demo, encoder_file, torchvision_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("feats") / "enc"
    assert run("extract", encoder_file, demo, out, "--clips", "2", "--crops", "three", "--levels",
               "--baseline", "random", "--baseline", f"torchvision:{torchvision_file}", *VIEWS) == 0
    return out


def test_extract_writes_features_index_and_protocol(feats, demo, encoder_file):
    import hashlib

    train, test = load_feature_set(feats / "train"), load_feature_set(feats / "test")
    assert train.features.shape == (22, 256) and test.features.shape == (11, 256)
    p = test.protocol
    assert p["encoder"]["sha256"] == hashlib.sha256(Path(encoder_file).read_bytes()).hexdigest()
    assert p["encoder"]["checkpoint"] == str(Path(encoder_file).resolve())
    assert p["views"]["views_per_video"] == 6 and p["views"]["crops"] == 3 and p["views"]["num_clips"] == 2
    assert p["n_videos"] == 11 and p["n_skipped"] == 0 and p["code_version"]["mlfo"]
    assert p["groups"]["move_up"] == "motion" and p["groups"]["ring"] == "appearance"
    assert train.classes == test.classes and len(train.classes) == 11
    for fs in (train, test):  # label k is the same class name in both sets
        assert all(fs.classes[y] == n for y, n in zip(fs.labels, fs.label_names))
    assert load_feature_set(feats / "test", level="low").features.shape == (11, 64)
    for b in ("random", "torchvision-r3d_small_tv"):
        bt = load_feature_set(feats / "baselines" / b / "test")
        assert bt.paths == test.paths and not np.allclose(bt.features, test.features)
    assert load_feature_set(feats / "baselines" / "random" / "test").protocol["encoder"]["kind"] == "random"


def test_retrieval_card_matches_the_metric_on_the_saved_features(feats, capsys):
    assert run("eval", "retrieval", feats) == 0
    card = json.loads((feats / "retrieval.card.json").read_text())
    train, test = load_feature_set(feats / "train"), load_feature_set(feats / "test")
    want = recall_at_k(train.features, train.labels, test.features, test.labels)
    assert card["metrics"] == pytest.approx(want)
    assert card["protocol"]["center"] is False and card["protocol"]["feature_views"]["test"]["crops"] == 3
    assert set(card["groups"]) == {"motion", "appearance"}
    assert card["encoder"]["sha256"] == test.protocol["encoder"]["sha256"]
    assert (feats / "retrieval_recall_curve.png").is_file() and (feats / "tsne_high.png").is_file()
    for b in ("random", "torchvision-r3d_small_tv"):
        assert (feats / "baselines" / b / "retrieval.card.json").is_file()
    out = capsys.readouterr().out
    assert "random-init r3d_small" in out and "R@1 motion" in out

    assert run("eval", "retrieval", feats, "--center", "--no-baselines", "--no-plots") == 0
    centred = json.loads((feats / "retrieval-center.card.json").read_text())
    assert centred["protocol"]["center"] is True
    assert centred["metrics"] == pytest.approx(
        recall_at_k(train.features, train.labels, test.features, test.labels, center=True))


def test_knn_and_linear_cards(feats, tmp_path):
    assert run("eval", "knn", feats, "--k", "5", "--temperature", "0.1") == 0
    card = json.loads((feats / "knn.card.json").read_text())
    train, test = load_feature_set(feats / "train"), load_feature_set(feats / "test")
    pred = knn_predict(train.features, train.labels, test.features, 11, k=5, temperature=0.1)
    assert card["metrics"]["top1"] == pytest.approx(100 * np.mean(pred == test.labels))
    assert card["protocol"]["k"] == 5 and card["protocol"]["temperature"] == 0.1

    assert run("eval", "linear", "--train", feats / "train", "--test", feats / "test", "--out", tmp_path,
               "--epochs", "3", "--lrs", "0.1", "--wds", "0", "--level", "mid") == 0
    card = json.loads((tmp_path / "linear.card.json").read_text())
    assert card["protocol"]["level"] == "mid" and "hold-out" in card["protocol"]["selection"]
    assert card["selection"]["n_holdout"] > 0 and 1 <= card["selection"]["epoch"] <= 3
    assert 0 <= card["metrics"]["top1"] <= 100 and (tmp_path / "linear_confusion.png").is_file()


def test_sliding_window_extraction_and_subset(demo, encoder_file, tmp_path):
    assert run("extract", encoder_file, demo, tmp_path, "--stride", "8", "--subset", "test", *VIEWS) == 0
    fs = load_feature_set(tmp_path / "test")
    assert fs.protocol["views"]["sampling"] == "sliding" and fs.protocol["views"]["views_per_video"] is None
    assert len(fs.labels) == 11 and not (tmp_path / "train").exists()


def test_finetune_resumes_and_frozen_probe_keeps_the_backbone(demo, encoder_file, tmp_path, capsys):
    args = ["eval", "finetune", encoder_file, demo, tmp_path / "ft", "--epochs", "1", "--batch-size", "8",
            "--clips", "2", "--crops", "center", *VIEWS]
    assert run(*args) == 0
    card = json.loads((tmp_path / "ft" / "finetune.card.json").read_text())
    assert card["task"] == "finetune" and "top1" in card["metrics"] and set(card["groups"]) == {"motion", "appearance"}
    assert card["protocol"]["test_views"]["views_per_video"] == 2 and card["training"]["default"]["history"]
    assert (tmp_path / "ft" / "last.pt").is_file() and (tmp_path / "ft" / "finetune_confusion.png").is_file()
    capsys.readouterr()
    assert run(*args) == 0  # the finished run is resumed, not retrained
    assert "mlfo: resumed from" in capsys.readouterr().err
    assert json.loads((tmp_path / "ft" / "finetune.card.json").read_text())["metrics"] == card["metrics"]

    assert run("eval", "finetune", encoder_file, demo, tmp_path / "frozen", "--freeze-backbone", "--epochs", "1",
               "--batch-size", "8", "--clips", "1", "--no-plots", *VIEWS) == 0
    state = torch.load(tmp_path / "frozen" / "last.pt", weights_only=False)["method"]
    original = torch.load(encoder_file, weights_only=False)["state_dict"]
    for key, value in original.items():
        assert torch.equal(state[f"model.backbone.{key}"], value), key
    assert json.loads((tmp_path / "frozen" / "linear-e2e.card.json").read_text())["task"] == "linear-e2e"


def test_report_collects_every_card(feats, capsys):
    run("eval", "retrieval", feats, "--no-plots")
    run("eval", "knn", feats, "--k", "3", "--no-plots")
    capsys.readouterr()
    assert run("report", feats) == 0
    text = (feats / "report.md").read_text()
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    header = lines[0]
    assert "retrieval R@1" in header and "knn top1" in header and "retrieval R@1 motion" in header
    rows = lines[1:]
    names = {r.split("|")[1].strip() for r in rows}
    assert {"random-init r3d_small", "torchvision r3d_small (r3d_small_tv)"} <= names and len(rows) == 3
    assert "report.md" in capsys.readouterr().out


def test_user_errors_are_one_line(tmp_path, capsys):
    assert run("eval", "retrieval", tmp_path) == 2
    assert run("report", tmp_path) == 2
    assert run("extract", tmp_path / "nope.pt", tmp_path, tmp_path / "o") == 2
    err = capsys.readouterr().err
    assert err.count("mlfo: error:") == 3 and "nope.pt" in err


def test_official_splits_all_report_each_split_and_the_mean(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from eval_fixtures import ucf_fixture

    root, splits = ucf_fixture(tmp_path)
    out = tmp_path / "feats"
    assert run("extract", "random", root, out, "--arch", "r3d_small", "--split-dir", splits, "--split", "all",
               "--clips", "1", *VIEWS) == 0
    assert sorted(p.parent.name + "/" + p.name for p in out.glob("split*/*")) == [
        f"split{s}/{sub}" for s in (1, 2, 3) for sub in ("test", "train")]
    assert run("eval", "knn", out, "--k", "2", "--no-plots") == 0
    card = json.loads((out / "knn.card.json").read_text())
    assert list(card["splits"]) == ["split1", "split2", "split3"]
    assert card["metrics"]["top1"] == pytest.approx(np.mean([m["top1"] for m in card["splits"].values()]))
    assert card["protocol"]["split"] == "mean of split1, split2, split3" and card["dataset"]["name"] == "ucf101"
    assert run("eval", "knn", out, "--k", "2", "--split", "2", "--no-plots", "--out", tmp_path / "s2") == 0
    assert json.loads((tmp_path / "s2" / "knn.card.json").read_text())["protocol"]["split"] == "split2"

    assert run("eval", "finetune", "random", root, tmp_path / "ft", "--arch", "r3d_small", "--split-dir", splits,
               "--split", "all", "--epochs", "1", "--batch-size", "4", "--clips", "1", "--no-plots", *VIEWS) == 0
    ft = json.loads((tmp_path / "ft" / "finetune.card.json").read_text())
    assert list(ft["splits"]) == ["split1", "split2", "split3"]
    assert all((tmp_path / "ft" / f"split{s}" / "last.pt").is_file() for s in (1, 2, 3))


def test_killed_finetune_resumes_to_the_same_weights(demo, encoder_file, tmp_path, monkeypatch):
    import mlfo.train.checkpoint as checkpoint
    from mlfo.data.splits import resolve_data
    from mlfo.eval.finetune import FinetuneConfig, finetune
    from mlfo.eval.views import ViewConfig

    parts, classes, _, _ = resolve_data(str(demo), progress=False)
    train, test = parts[0].records[::2], parts[1].records
    cfg = FinetuneConfig(epochs=2, batch_size=4, clip_len=4, crop_size=32, warmup_epochs=0, device="cpu")
    views = ViewConfig(clip_len=4, num_clips=1, resize=32, crop_size=32)

    def fresh():
        return torch.load(encoder_file, weights_only=False)

    def backbone():
        net = build_backbone(**{k: v for k, v in fresh()["arch"].items() if k != "num_classes"})
        net.load_state_dict(fresh()["state_dict"])
        return net

    whole = finetune(backbone(), train, test, len(classes), tmp_path / "whole", cfg, views, progress=False)

    real_save = checkpoint.atomic_torch_save

    def save_then_die(obj, path):
        real_save(obj, path)
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "atomic_torch_save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        finetune(backbone(), train, test, len(classes), tmp_path / "killed", cfg, views, progress=False)
    monkeypatch.setattr(checkpoint, "atomic_torch_save", real_save)
    assert torch.load(tmp_path / "killed" / "last.pt", weights_only=False)["epoch"] == 1
    resumed = finetune(backbone(), train, test, len(classes), tmp_path / "killed", cfg, views, progress=False)
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=False)["method"]
    b = torch.load(tmp_path / "killed" / "last.pt", weights_only=False)["method"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    np.testing.assert_allclose(resumed.probabilities, whole.probabilities, rtol=1e-5, atol=1e-6)
