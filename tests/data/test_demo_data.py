"""The built-in demo dataset: real decodable H.264 files, deterministic by seed."""

import csv
import json

import numpy as np
import pytest

from mlfo.cli import main
from mlfo.data.demo import CLASSES, demo_summary, generate_demo_dataset, render_demo_video
from mlfo.data.readers import open_video
from mlfo.errors import MLFOError

SMALL = dict(videos_per_class=3, num_frames=20, height=32, width=32, workers=1)
SOME = ["move_up", "zoom_in", "fall_reversed", "ring"]


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory):
    return generate_demo_dataset(tmp_path_factory.mktemp("demo") / "d", seed=3, classes=SOME, **SMALL)


def test_layout_counts_and_split(small_demo):
    all_rows = _rows(small_demo / "all.csv")
    train, test = _rows(small_demo / "train.csv"), _rows(small_demo / "test.csv")
    assert list(all_rows[0]) == ["path", "n_frames", "label"]
    assert len(all_rows) == 12 and len(train) == 8 and len(test) == 4
    assert sorted(r["path"] for r in train + test) == sorted(r["path"] for r in all_rows)
    for rows, per_class in ((train, 2), (test, 1)):  # stratified
        assert {c: sum(r["label"] == c for r in rows) for c in SOME} == {c: per_class for c in SOME}
    meta = json.loads((small_demo / "classes.json").read_text())
    assert [c["name"] for c in meta["classes"]] == SOME
    groups = {c["name"]: c["group"] for c in meta["classes"]}
    assert groups == {"move_up": "motion", "zoom_in": "motion", "fall_reversed": "motion", "ring": "appearance"}
    assert all(c["description"] for c in meta["classes"])


def test_every_file_decodes_with_its_listed_frame_count(small_demo):
    for row in _rows(small_demo / "all.csv"):
        assert not row["path"].startswith("/")
        with open_video(small_demo / row["path"]) as reader:
            assert (reader.num_frames, reader.height, reader.width) == (int(row["n_frames"]), 32, 32) == (20, 32, 32)
            frames = reader.get_frames([0, 19])
            assert frames.shape == (2, 32, 32, 3) and frames.float().std() > 5  # textured, not blank


def test_same_seed_same_dataset_other_seed_other_videos(small_demo, tmp_path):
    again = generate_demo_dataset(tmp_path / "again", seed=3, classes=SOME, **SMALL)
    other = generate_demo_dataset(tmp_path / "other", seed=4, classes=SOME, **SMALL)
    for name in ("all.csv", "train.csv", "test.csv"):
        assert (small_demo / name).read_text() == (again / name).read_text()
    path = _rows(small_demo / "all.csv")[5]["path"]
    read = lambda root: open_video(root / path).get_frames(range(20))
    assert np.array_equal(read(small_demo).numpy(), read(again).numpy())
    assert not np.array_equal(read(small_demo).numpy(), read(other).numpy())


def test_parallel_workers_write_the_same_videos(small_demo, tmp_path):
    params = {**SMALL, "workers": 2}
    parallel = generate_demo_dataset(tmp_path / "par", seed=3, classes=SOME, **params)
    for row in _rows(small_demo / "all.csv")[:4]:
        a = open_video(small_demo / row["path"]).get_frames(range(20))
        b = open_video(parallel / row["path"]).get_frames(range(20))
        assert np.array_equal(a.numpy(), b.numpy())


def test_existing_dataset_is_reused_unless_overwrite(small_demo):
    video = small_demo / _rows(small_demo / "all.csv")[0]["path"]
    before = video.stat().st_mtime_ns
    generate_demo_dataset(small_demo, seed=3, classes=SOME, **SMALL)
    assert video.stat().st_mtime_ns == before
    generate_demo_dataset(small_demo, seed=3, classes=SOME, overwrite=True, **SMALL)
    assert video.stat().st_mtime_ns != before


def test_never_writes_into_a_folder_of_other_files_or_over_another_dataset(small_demo, tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "train.csv").write_bytes(b"path,label\nclip.avi,jump\n")  # a user's list, same name as ours
    for force in (False, True):
        with pytest.raises(MLFOError, match="holds files that are not the demo dataset"):
            generate_demo_dataset(user, seed=3, classes=SOME, overwrite=force, **SMALL)
    assert [p.name for p in user.iterdir()] == ["train.csv"]
    assert (user / "train.csv").read_bytes() == b"path,label\nclip.avi,jump\n"
    before = {p: p.read_bytes() for p in small_demo.rglob("*") if p.is_file()}
    with pytest.raises(MLFOError, match="holds a demo dataset made with other settings"):
        generate_demo_dataset(small_demo, seed=4, classes=SOME, **SMALL)
    assert {p: p.read_bytes() for p in small_demo.rglob("*") if p.is_file()} == before
    # The videos of a killed generation are its own: a rerun completes it.
    partial = tmp_path / "partial"
    (partial / "videos").mkdir(parents=True)
    (partial / "videos" / "ring_000.mp4").write_bytes(b"cut short")
    assert (generate_demo_dataset(partial, seed=3, classes=SOME, **SMALL) / "train.csv").is_file()


def test_reversed_class_plays_backwards_and_motion_classes_move():
    # "fall": objects accelerate downward, so the frame-to-frame change grows within a fall;
    # the reversed class is its mirror image in time.
    fall = render_demo_video("fall", seed=0, index=0, num_frames=40, height=48, width=48)
    assert fall.shape == (40, 48, 48, 3) and fall.dtype == np.uint8
    for name in ("move_up", "zoom_out", "rotate", "fall_reversed"):
        frames = render_demo_video(name, seed=0, index=1, num_frames=12, height=48, width=48).astype(int)
        assert np.abs(np.diff(frames, axis=0)).mean() > 1, name  # something moves


def test_motion_parameters_define_the_class_and_vary_within_it():
    from mlfo.data.demo.classes import CLASS_NAMES
    from mlfo.data.demo.render import _make_scene, texture_pool

    def scene(name, index):
        rng = np.random.default_rng([0, CLASS_NAMES.index(name), index])
        return _make_scene(CLASSES[CLASS_NAMES.index(name)], rng, texture_pool(0), 30, 64, 64)

    def vertical_velocity(name, index):
        steps = np.concatenate([np.diff(o.pos[:, 0]) for o in scene(name, index).objects])
        return np.median(steps)  # median: ignores the wrap-around jumps

    ups = [vertical_velocity("move_up", i) for i in range(6)]
    downs = [vertical_velocity("move_down", i) for i in range(6)]
    assert max(ups) < -0.3 and min(downs) > 0.3
    assert len({round(v, 3) for v in ups}) == 6  # speed varies continuously within the class
    falls = [np.diff(scene("fall", i).objects[0].pos[:, 0], 2) for i in range(4)]
    assert all(np.median(a) > 0.03 for a in falls)  # accelerating downward
    zoom_in, zoom_out = scene("zoom_in", 0).zoom, scene("zoom_out", 0).zoom
    assert np.all(np.diff(zoom_in) > 0) and np.all(np.diff(zoom_out) < 0)
    # Appearance classes use their own shape; motion classes only the shared pool.
    assert {o.shape for o in scene("ring", 0).objects} == {"ring"}
    motion_shapes = {o.shape for name in ("move_up", "rotate", "fall") for i in range(5) for o in scene(name, i).objects}
    assert motion_shapes <= {"disk", "square", "ellipse"}


def test_reversed_class_is_a_reversed_fall():
    from mlfo.data.demo import classes, render

    frames = render_demo_video("fall_reversed", seed=0, index=2, num_frames=16, height=32, width=32)
    rng = np.random.default_rng([0, classes.CLASS_NAMES.index("fall_reversed"), 2])
    pool = render.texture_pool(0)
    forward = render._render(render._make_scene(classes.CLASSES[6], rng, pool, 16, 32, 32), pool, 16, 32, 32)
    assert np.array_equal(frames, forward[::-1])


def test_bad_arguments_are_one_line_errors(tmp_path):
    with pytest.raises(MLFOError, match="classes: unknown demo class 'dance'"):
        generate_demo_dataset(tmp_path, classes=["dance"])
    with pytest.raises(MLFOError, match="frame size"):
        generate_demo_dataset(tmp_path, height=33)
    with pytest.raises(MLFOError, match="videos_per_class"):
        generate_demo_dataset(tmp_path, videos_per_class=1)


def test_cli_writes_and_summarises(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["demo-data", str(out), "--videos-per-class", "2", "--frames", "12", "--size", "32", "32",
                 "--workers", "1", "--seed", "1"])
    assert code == 0
    text = capsys.readouterr().out
    assert f"{len(CLASSES)} classes, {2 * len(CLASSES)} videos" in text
    for c in CLASSES:
        assert c.name in text
    assert text.startswith(demo_summary(out))
    assert len(_rows(out / "all.csv")) == 2 * len(CLASSES)
