"""Test videos the encoder was pretrained on are counted, printed and recorded (UCF101
`--split all` with an encoder pretrained on split-1 train), through extraction, the
feature evaluations and fine-tuning; fine-tuning names test classes without train videos."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from mlfo.cli import main
from mlfo.data import provenance
from mlfo.models.backbones import build_backbone
from mlfo.models.torchvision_compat import export_torchvision_state_dict

sys.path.insert(0, str(Path(__file__).parent))
from eval_fixtures import ucf_fixture  # noqa: E402

VIEWS = ["--clip-len", "4", "--resize", "32", "--crop-size", "32", "--clips", "1", "--workers", "0", "--quiet"]


def run(*argv) -> int:
    return main([str(a) for a in argv])


def encoder_pretrained_on(names: list[str], path: Path) -> Path:
    """An exported encoder (safetensors) whose header records ``names`` as its pretraining videos."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net = build_backbone("r3d_small")
    tensors = {k: v.contiguous() for k, v in export_torchvision_state_dict(net).items()}
    save_file(tensors, str(path), metadata={"arch": json.dumps(net.arch),
                                            "trained_on": provenance.to_text(provenance.name_digests(names))})
    return path


def test_split_all_reports_test_videos_seen_in_pretraining(tmp_path, capsys):
    root, splits = ucf_fixture(tmp_path)
    split1_train = [line.split()[0] for line in (splits / "trainlist01.txt").read_text().splitlines()]
    enc = encoder_pretrained_on(split1_train, tmp_path / "enc.safetensors")
    out = tmp_path / "feats"
    assert run("extract", enc, root, out, "--split-dir", splits, "--split", "all", *VIEWS) == 0
    printed = capsys.readouterr().out
    overlap = {s: json.loads((out / f"split{s}" / "test" / "protocol.json").read_text())["pretraining_overlap"]
               for s in (1, 2, 3)}
    # Split s tests group s; split-1 train holds groups 2 and 3: splits 2 and 3 test on seen videos.
    assert [overlap[s]["videos"] for s in (1, 2, 3)] == [0, 2, 2] and overlap[2]["of"] == 2
    assert "mlfo: split2/test: 2 of 2 videos were among" in printed and "mlfo: split1/test:" not in printed

    assert run("eval", "knn", out, "--k", "2", "--no-plots") == 0
    printed = capsys.readouterr().out
    assert f"{out} split2: 2 of 2 test videos were among the encoder's pretraining videos" in printed
    card = json.loads((out / "knn.card.json").read_text())
    assert sorted(card["caveats"]) == ["split2", "split3"]
    assert card["caveats"]["split3"]["pretraining_overlap"]["videos"] == 2

    assert run("eval", "finetune", enc, root, tmp_path / "ft", "--split-dir", splits, "--split", "2",
               "--epochs", "1", "--batch-size", "4", "--no-plots", *VIEWS) == 0
    assert "2 of 2 test videos were among the encoder's pretraining videos" in capsys.readouterr().out
    ft = json.loads((tmp_path / "ft" / "finetune.card.json").read_text())
    assert ft["caveats"]["split2"]["pretraining_overlap"]["videos"] == 2


def test_finetune_names_test_classes_without_train_videos(tmp_path, capsys):
    from mlfo.data.demo import generate_demo_dataset

    data = generate_demo_dataset(tmp_path / "data", seed=0, videos_per_class=3, num_frames=20, height=32,
                                 width=32, workers=1, classes=["move_up", "ring", "zoom_in"])
    train = (data / "train.csv").read_text().splitlines()
    (data / "train.csv").write_text("\n".join(r for r in train if ",ring" not in r) + "\n")
    enc = encoder_pretrained_on([], tmp_path / "enc.safetensors")
    assert run("eval", "finetune", enc, data, tmp_path / "ft", "--epochs", "1", "--batch-size", "4",
               "--no-plots", *VIEWS) == 0
    assert "1 test class(es) without train videos (ring): their 1 test videos count as misses" in \
        capsys.readouterr().out
    card = json.loads((tmp_path / "ft" / "finetune.card.json").read_text())
    assert card["caveats"]["default"]["test_classes_absent_from_train"]["classes"] == ["ring"]


def _same_named_layout(tmp_path) -> tuple[list, list, list]:
    """videos/{train,test}/<class>/clip_000.mp4: different clips of one name in each part,
    plus a true copy of a train clip in a third folder; their probed records."""
    from mlfo.data.demo import generate_demo_dataset
    from mlfo.data.sources import load_index

    parts = {}
    for part, seed in (("train", 0), ("test", 1)):
        data = generate_demo_dataset(tmp_path / f"gen_{part}", seed=seed, videos_per_class=2, num_frames=20,
                                     height=32, width=32, workers=1, classes=["move_up", "ring"])
        for video in sorted((data / "videos").glob("*_000.mp4")):
            target = tmp_path / "videos" / part / video.stem.rsplit("_", 1)[0] / "clip_000.mp4"
            target.parent.mkdir(parents=True)
            target.write_bytes(video.read_bytes())
        parts[part] = load_index(tmp_path / "videos" / part, fmt="folder", cache=False, progress=False).records
    copy = tmp_path / "copies" / "move_up" / "clip_000.mp4"
    copy.parent.mkdir(parents=True)
    copy.write_bytes(Path(next(r.path for r in parts["train"] if "move_up" in r.path)).read_bytes())
    copies = load_index(tmp_path / "copies", fmt="folder", cache=False, progress=False).records
    return parts["train"], parts["test"], copies


def test_same_named_different_clips_are_not_seen_in_pretraining(tmp_path):
    train, test, copies = _same_named_layout(tmp_path)
    assert [Path(r.path).name for r in train] == [Path(r.path).name for r in test] == ["clip_000.mp4"] * 2
    digests = provenance.video_digests(train)
    assert provenance.by_identity(digests) and len(digests) == len(train) + 1
    overlap = provenance.overlap_summary(digests, test)
    assert overlap["videos"] == 0 and overlap["of"] == 2 and overlap["matched"] == provenance.MATCHED
    found = provenance.overlap_summary(digests, copies)  # a true copy, in another folder
    assert found["videos"] == 1 and found["examples"] == [copies[0].path]
    # Through the safetensors header, as extraction reads it.
    assert provenance.seen_in(provenance.from_text(provenance.to_text(digests)), train + test) == [0, 1]


def test_name_only_sets_of_older_encoders_match_by_name_and_say_so(tmp_path):
    from mlfo.eval.labels import LabelNotes, notes_line

    train, test, _ = _same_named_layout(tmp_path)
    old = provenance.name_digests(r.path for r in train)  # what earlier mlfo versions recorded
    assert not provenance.by_identity(old)
    overlap = provenance.overlap_summary(old, test)
    assert overlap["videos"] == 2 and overlap["digest"] == provenance.NAME_DIGEST
    line = notes_line("feats", LabelNotes(pretraining_overlap=overlap))
    assert "2 of 2 test videos were among the encoder's pretraining videos (matched by file name only" in line
    assert "different videos of one name count as seen" in line


def test_frame_folders_are_matched_by_name_frames_and_their_end_files(tmp_path):
    from mlfo.data.sources.records import VideoRecord

    def folder(part: str, sizes: list[int]) -> VideoRecord:
        path = tmp_path / part / "v_Biking_g01_c01"
        path.mkdir(parents=True)
        for i, size in enumerate(sizes):
            (path / f"image_{i + 1:05d}.png").write_bytes(b"x" * size)
        return VideoRecord(str(path), num_frames=len(sizes), fps=25.0, width=8, height=8)

    train = folder("train", [10, 11, 12])
    digests = provenance.video_digests([train])
    assert provenance.seen_in(digests, [folder("test", [10, 13, 14])]) == []  # same name, other frames
    assert provenance.seen_in(digests, [folder("copy", [10, 11, 12])]) == [0]
