"""Multi-view extraction averages exactly the views it names; official splits map to feature folders."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mlfo.data.sources import VideoRecord
from mlfo.data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize_clips
from mlfo.data.splits import resolve_data
from mlfo.eval.extract import compute_features
from mlfo.eval.views import ViewConfig

sys.path.insert(0, str(Path(__file__).parent))
from eval_fixtures import H, W, ucf_fixture, write_frames  # noqa: E402


class MeanPixel(nn.Module):
    """Test double for an encoder: the clip's mean raw grey value (un-normalised channel 0),
    and it logs how many clips it was shown."""

    def __init__(self):
        super().__init__()
        self.clips_seen = 0
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):  # (N, 3, T, S, S) -> (N, 2)
        self.clips_seen += len(x)
        raw = (x[:, 0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]) * 255
        return torch.stack([raw.mean(dim=(1, 2, 3)), raw[:, 0].mean(dim=(1, 2))], dim=1)


def _expected(starts, clip_len, crop_lefts, crop=32, offset=0):
    """Mean grey over the named clips x crops, computed from the drawing formula."""
    values = []
    for s in starts:
        for left in crop_lefts:
            t_mean = np.mean([5 * (s + k + offset) for k in range(clip_len)])
            values.append(t_mean + 2 * (left + (crop - 1) / 2))
    return np.mean(values)


@pytest.fixture(scope="module")
def frame_videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("frames")
    return [
        VideoRecord(str(write_frames(root / "a", 20)), 20, 25.0, W, H, label=0),
        VideoRecord(str(write_frames(root / "b", 14, offset=3)), 14, 25.0, W, H, label=1),
    ]


@pytest.mark.parametrize(
    "views, starts_per_video, crop_lefts",
    [
        # 3 uniform clips of 4 frames: first to last start (20 frames: 0, 8, 16; 14 frames: 0, 5, 10)
        (ViewConfig(clip_len=4, num_clips=3, resize=32, crop_size=32, crop_mode="three"),
         [[0, 8, 16], [0, 5, 10]], [0, 8, 16]),
        # every window 6 frames apart, centre crop only
        (ViewConfig(clip_len=4, stride=6, resize=32, crop_size=32, crop_mode="center"),
         [[0, 6, 12], [0, 6]], [8]),
        # one clip: the middle start
        (ViewConfig(clip_len=4, num_clips=1, resize=32, crop_size=32, crop_mode="center"),
         [[8], [5]], [8]),
    ],
)
def test_feature_is_the_mean_over_exactly_the_named_views(frame_videos, views, starts_per_video, crop_lefts):
    stub = MeanPixel()
    res = compute_features({"stub": stub}, views.dataset(frame_videos, backend="frames"), batch_size=4,
                           views_per_video=views.views_per_video, device="cpu", progress=False)
    feats = res.features["stub"]["high"]
    assert res.kept == [0, 1] and res.failed == []
    offsets = [0, 3]
    for i, starts in enumerate(starts_per_video):
        want = _expected(starts, views.clip_len, crop_lefts, offset=offsets[i])
        assert feats[i, 0] == pytest.approx(want, abs=0.02)
    assert stub.clips_seen == sum(len(s) for s in starts_per_video) * len(crop_lefts)


def test_failed_video_is_skipped_and_reported(frame_videos, tmp_path):
    bad = VideoRecord(str(tmp_path / "missing.mp4"), 20, 25.0, W, H, label=0)
    views = ViewConfig(clip_len=4, num_clips=2, resize=32, crop_size=32)
    res = compute_features({"stub": MeanPixel()}, views.dataset([frame_videos[0], bad, frame_videos[1]],
                           backend="auto"), batch_size=4, views_per_video=2, device="cpu", progress=False)
    assert res.kept == [0, 2] and res.failed == [1]
    assert res.features["stub"]["high"].shape == (2, 2)


def test_levels_are_pooled_per_level_and_high_equals_forward():
    from mlfo.models.backbones import build_backbone

    torch.manual_seed(0)
    net = build_backbone("r3d_small").eval()

    class Views(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):  # uint8 (V, T, S, S, 3), as EvalClipDataset gives
            views = torch.randint(0, 256, (3, 4, 32, 32, 3), generator=torch.Generator().manual_seed(i))
            return {"views": views.to(torch.uint8), "index": i}

    res = compute_features({"n": net}, Views(), levels=["low", "mid", "high"], batch_size=6, views_per_video=3,
                           device="cpu", progress=False)
    with torch.no_grad():
        direct = torch.stack([net(normalize_clips(Views()[i]["views"])).mean(0) for i in range(2)]).numpy()
    np.testing.assert_allclose(res.features["n"]["high"], direct, rtol=1e-4, atol=1e-5)
    assert res.features["n"]["low"].shape == (2, net.level_channels["low"])
    assert res.features["n"]["mid"].shape == (2, net.level_channels["mid"])


# ------------------------------------------------------------------ official split files


def test_ucf101_splits_become_split_folders(tmp_path):
    root, splits = ucf_fixture(tmp_path)
    parts, classes, groups, dropped = resolve_data(str(root), fmt="ucf101", split="all", split_dir=str(splits),
                                                   progress=False)
    assert classes == ["ApplyEyeMakeup", "Biking"] and groups == {} and dropped == []
    assert [p.subdir for p in parts] == [f"split{s}/{sub}" for s in (1, 2, 3) for sub in ("train", "test")]
    for p in parts:
        s = int(p.subdir[5])
        groups_in = {Path(r.path).name.split("_g0")[1][0] for r in p.records}
        assert groups_in == ({str(s)} if p.subdir.endswith("test") else {"1", "2", "3"} - {str(s)})
        for r in p.records:
            assert classes[r.label] == r.label_name == Path(r.path).parent.name
    one, *_ = resolve_data(str(root), fmt="ucf101", split="2", subset="test", split_dir=str(splits), progress=False)
    assert [p.subdir for p in one] == ["split2/test"] and len(one[0].records) == 2


def test_hmdb51_splits_become_split_folders(tmp_path):
    root, splits = tmp_path / "hmdb51", tmp_path / "splits"
    splits.mkdir()
    for ci, c in enumerate(["brush_hair", "cartwheel"]):
        for s in (1, 2, 3):
            codes = {f"{c}_v{k}.avi": code for k, code in enumerate(["1", "2", "0", "1"])}
            if s == 2:
                codes = {f"{c}_v{k}.avi": code for k, code in enumerate(["2", "1", "1", "0"])}
            (splits / f"{c}_test_split{s}.txt").write_text("".join(f"{n} {code}\n" for n, code in codes.items()))
        for k in range(4):
            write_frames(root / c / f"{c}_v{k}", 8, offset=k)
    parts, classes, _, _ = resolve_data(str(root), split="all", split_dir=str(splits), progress=False)
    assert classes == ["brush_hair", "cartwheel"]
    by = {p.subdir: sorted(Path(r.path).name for r in p.records) for p in parts}
    assert by["split1/train"] == ["brush_hair_v0", "brush_hair_v3", "cartwheel_v0", "cartwheel_v3"]
    assert by["split1/test"] == ["brush_hair_v1", "cartwheel_v1"]
    assert by["split2/test"] == ["brush_hair_v0", "cartwheel_v0"]
    assert parts[0].info["name"] == "hmdb51"


def test_train_and_test_share_one_class_list(tmp_path):
    """A class missing from test must not shift test labels."""
    videos = tmp_path / "v"
    for name in ("a1", "a2", "b1", "c1", "c2"):
        write_frames(videos / name, 6)
    (tmp_path / "train.csv").write_text("path,label\nv/a1,alpha\nv/b1,beta\nv/c1,gamma\n")
    (tmp_path / "test.csv").write_text("path,label\nv/a2,alpha\nv/c2,gamma\n")
    parts, classes, _, _ = resolve_data(str(tmp_path), progress=False)
    assert classes == ["alpha", "beta", "gamma"]
    test = next(p for p in parts if p.subdir == "test")
    assert [(r.label, r.label_name) for r in test.records] == [(0, "alpha"), (2, "gamma")]


def test_uint8_views_normalised_on_the_device_match_the_float_path(frame_videos):
    """Views leave the dataset as uint8 (a quarter of the bytes through workers and pinned
    memory); features equal the former path that normalised to float in the worker."""
    from mlfo.models.backbones import build_backbone

    torch.manual_seed(0)
    net = build_backbone("r3d_small").eval()
    views = ViewConfig(clip_len=4, num_clips=2, resize=32, crop_size=32, crop_mode="three")
    dataset = views.dataset(frame_videos, backend="frames")
    assert dataset[0]["views"].dtype == torch.uint8 and dataset[0]["views"].shape == (6, 4, 32, 32, 3)
    res = compute_features({"n": net}, dataset, batch_size=4, views_per_video=6, device="cpu", progress=False)
    with torch.no_grad():  # the float path: normalise each video's views on the CPU, then forward
        old = np.stack([net(normalize_clips(dataset[i]["views"])).mean(0).numpy() for i in range(2)])
    np.testing.assert_allclose(res.features["n"]["high"], old, rtol=1e-5, atol=1e-6)
