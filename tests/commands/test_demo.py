"""`mlfo demo` end to end at toy size: every stage runs and the table compares both encoders."""

from mlfo.cli import main
from mlfo.eval.cards import read_card

TINY = [
    "data.clip_len=4", "data.crop_size=32", "data.batch_size=4", "data.num_workers=0",
    "backbone.widths=[8,16,16,32]", "model.embed_dim=16", "model.num_prototypes=8",
    "model.fine_steps={low: 2, mid: 1, high: 1}", "objective.timestamp_mid=false",
    "objective.timestamp_high=false", "objective.queue_length=16", "train.epochs=1",
    "train.progress=false", "train.tensorboard=false",
]


def test_demo_runs_every_stage_and_compares_with_random_init(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--videos-per-class", "3", "--knn-k", "3", *TINY]) == 0
    printed = capsys.readouterr().out
    report = (out / "report.md").read_text()
    table = [line for line in report.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| encoder | kNN all | kNN motion | kNN appearance | R@1 all")
    assert table[1].startswith("| MLFO pretrained |") and table[2].startswith("| random-init r3d_small |")
    assert table[1] in printed
    assert (out / "pretrain" / "last.pt").exists() and (out / "pretrain" / "metrics.png").exists()
    for folder in (out / "features", out / "features" / "baselines" / "random"):
        for label in ("knn", "retrieval", "linear"):
            card = read_card(folder / f"{label}.card.json")
            assert set(card["groups"]) == {"motion", "appearance"}
    knn = read_card(out / "features" / "knn.card.json")
    cell = f"{knn['metrics']['top1']:.1f}"
    assert table[1].split("|")[2].strip() == cell  # the table shows the card's number
    # a second run reuses the data and the finished pretraining
    assert main(["demo", "--out", str(out), "--videos-per-class", "3", "--knn-k", "3", *TINY]) == 0
