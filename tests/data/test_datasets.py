"""ThreeClipDataset / EvalClipDataset and the loader's skip rule on tiny real video files."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mlfo.data.datasets import EvalClipDataset, ThreeClipDataset
from mlfo.data.loading import SkippingDataset, SkipLog, collate
from mlfo.data.demo import write_mp4
from mlfo.data.sources import VideoRecord

STEP = 4  # frame i is a flat grey picture of value STEP * i: survives crop, flip, resize and H.264


def _grey_video(path, num_frames, height=36, width=48):
    values = (np.arange(num_frames) * STEP).astype(np.uint8)
    frames = np.broadcast_to(values[:, None, None, None], (num_frames, height, width, 3)).copy()
    write_mp4(path, frames, crf=10)
    return VideoRecord(str(path), num_frames, 25.0, width, height, label=num_frames % 3)


def _frame_ids(clip):
    """Frame indices of a uint8 (T, S, S, 3) clip of grey frames."""
    return [int(round(float(f.float().mean()) / STEP)) for f in clip]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    good = [_grey_video(root / f"v{n}.mp4", n) for n in (40, 50, 60)]
    short = _grey_video(root / "short.mp4", 12)
    junk = root / "junk.mp4"
    junk.write_text("not a video")
    bad = [short, VideoRecord(str(junk), 10, 25.0, 48, 36), VideoRecord(str(root / "missing.mp4"), 10, 25.0, 48, 36)]
    return good, bad


def test_pretrain_item_holds_clips_a_b_g_of_one_span(videos):
    good, _ = videos
    ds = ThreeClipDataset(good, clip_len=6, r_max=3, crop_size=24, seed=1)
    for epoch in range(4):
        for i in range(len(ds)):
            item = ds[(epoch, i)]
            clips = item["clips"]
            assert item["index"] == i
            assert clips.shape == (3, 6, 24, 24, 3) and clips.dtype == torch.uint8
            a, b, g = (_frame_ids(c) for c in clips)
            span = a + b
            assert span == sorted(span) and len(set(span)) == 12 and span[-1] < good[i].num_frames
            steps = np.diff(span)
            assert steps.max() - steps.min() <= 1  # one rate for the whole span
            assert g == span[::2]


def test_pretrain_randomness_reproducible_and_differs_by_epoch_and_index(videos):
    good, _ = videos
    ds = ThreeClipDataset(good, clip_len=6, crop_size=24, seed=1)
    first = ds[2]["clips"]
    assert torch.equal(first, ThreeClipDataset(good, clip_len=6, crop_size=24, seed=1)[(0, 2)]["clips"])
    assert not torch.equal(first, ds[(1, 2)]["clips"])
    assert not torch.equal(first, ThreeClipDataset(good, clip_len=6, crop_size=24, seed=2)[2]["clips"])
    # Same video twice in the list: different draws for the two items.
    twice = ThreeClipDataset([good[2], good[2]], clip_len=6, crop_size=24, seed=1)
    assert not torch.equal(twice[0]["clips"], twice[1]["clips"])


def test_pretrain_draws_do_not_depend_on_worker_count(videos):
    good, _ = videos
    ds = ThreeClipDataset(good * 2, clip_len=6, crop_size=24, seed=3)
    load = lambda workers: next(iter(DataLoader(SkippingDataset(ds), batch_size=6, num_workers=workers,
                                                collate_fn=collate)))
    serial, parallel = load(0), load(2)
    assert serial["clips"].shape == (6, 3, 6, 24, 24, 3)
    assert torch.equal(serial["clips"], parallel["clips"])
    # Items 0..2 and 3..5 are the same videos, yet their clips differ (per-item streams).
    assert not torch.equal(serial["clips"][0], serial["clips"][3])


def test_pretrain_stream_does_not_depend_on_the_rank(videos, monkeypatch):
    """Keyed by (seed, epoch, index) only: W processes see the very clips one process sees."""
    good, _ = videos
    ds = ThreeClipDataset(good, clip_len=6, crop_size=24, seed=1)
    rank0 = ds[0]["clips"]
    monkeypatch.setenv("RANK", "1")
    assert torch.equal(rank0, ds[0]["clips"])


def test_bad_videos_are_skipped_named_and_counted(videos):
    good, bad = videos
    ds = SkippingDataset(ThreeClipDataset(good + bad, clip_len=8, crop_size=16))
    items = [ds[i] for i in range(len(ds))]
    assert ["skipped" in item for item in items] == [False] * 3 + [True] * 3
    assert [item["skipped"][0][0] for item in items[3:]] == [3, 4, 5]
    assert "too short" in items[3]["skipped"][0][1]
    batch = collate(items)
    assert batch["clips"].shape[0] == 3 and batch["index"].tolist() == [0, 1, 2]
    assert [index for index, _ in batch["skipped"]] == [3, 4, 5]
    lines = []
    log = SkipLog(good + bad, write=lines.append)
    assert log.add(batch["skipped"]) == 3 and len(log) == 3
    for record, line in zip(bad, lines):
        assert record.path in line and line.startswith("mlfo: skipped unreadable video")
    assert collate([items[3], items[4]]) == {"skipped": [*items[3]["skipped"], *items[4]["skipped"]]}


def test_eval_views_uniform_clips_and_crops(videos):
    good, bad = videos
    ds = EvalClipDataset(good + bad[:2], clip_len=4, num_clips=3, crop_size=16, resize=20, crop_mode="three")
    item = ds[1]  # 50 frames
    views = item["views"]
    # uint8 out of the workers: a quarter of float32's bytes through IPC and pinned memory
    assert views.shape == (9, 4, 16, 16, 3) and views.dtype == torch.uint8
    assert item["label"] == good[1].label and item["index"] == 1
    # Views are clip-major; each clip's frames come from uniform_clip_starts: 0, 23, 46.
    grey = views.float().mean(dim=(2, 3, 4))  # (V, T)
    ids = (grey / STEP).round().long()
    expected = [list(range(s, s + 4)) for s in (0, 23, 46) for _ in range(3)]
    assert ids.tolist() == expected
    assert "views" in ds[3]  # too short is fine for eval (frames repeat); junk is not
    assert "skipped" in SkippingDataset(ds)[4]
    assert EvalClipDataset(good, clip_len=4, crop_mode="ten", num_clips=2, crop_size=16, resize=20)[0]["views"].shape[0] == 20
    assert EvalClipDataset(good, clip_len=4, crop_mode="center", num_clips=1, crop_size=16, resize=20)[0]["views"].shape[0] == 1


def test_eval_short_video_repeats_its_last_frame(videos):
    _, bad = videos
    item = EvalClipDataset([bad[0]], clip_len=16, num_clips=1, crop_size=16, resize=20)[0]  # 12 frames
    assert item["views"].shape == (1, 16, 16, 16, 3)


def test_sliding_windows_collate_with_counts(videos):
    good, _ = videos
    ds = EvalClipDataset(good, clip_len=8, stride=8, crop_size=16, resize=20)
    counts = [ds[i]["views"].shape[0] for i in range(3)]
    assert counts == [5, 6, 7]  # 40 / 50 / 60 frames, windows 8 apart
    batch = collate([ds[0], {"skipped": [(1, "VideoDecodeError")]}, ds[2]])
    assert batch["views"].shape == (12, 8, 16, 16, 3)
    assert batch["views_counts"].tolist() == [5, 7] and len(batch["skipped"]) == 1
    assert batch["label"].tolist() == [good[0].label, good[2].label]


def test_decode_size_is_opt_in_and_keeps_frames_and_crops(videos, tmp_path):
    """``decode_size`` scales in the decoder; the default path is untouched."""
    good, _ = videos
    exact = ThreeClipDataset(good, clip_len=6, crop_size=24, seed=3)
    above = ThreeClipDataset(good, clip_len=6, crop_size=24, seed=3, decode_size=64)  # > the 36-pixel short side
    small = ThreeClipDataset(good, clip_len=6, crop_size=24, seed=3, decode_size=30)
    for i in range(len(good)):
        reference = exact[(1, i)]["clips"]
        assert torch.equal(above[(1, i)]["clips"], reference)  # never enlarged: the same bytes
        scaled = small[(1, i)]["clips"]
        assert scaled.shape == reference.shape
        assert [_frame_ids(c) for c in scaled] == [_frame_ids(c) for c in reference]  # the same frames
    with pytest.raises(ValueError, match="decode_size"):
        ThreeClipDataset(good, decode_size=0)


def test_decode_size_scales_through_the_reader(tmp_path):
    """Frames of a 320x240 video come out of the decoder at 213x160, close to a resize of
    the full-size frames (another filter, the same picture)."""
    from mlfo.data.readers import open_video
    from mlfo.data.transforms import resize_clip

    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, (12, 16, 3)).astype(np.uint8)
    texture = np.kron(coarse, np.ones((20, 20, 1), np.uint8))  # (240, 320, 3), 20-pixel blocks
    path = tmp_path / "texture.mp4"
    write_mp4(path, np.stack([np.roll(texture, 2 * t, axis=1) for t in range(40)]), crf=10)
    record = VideoRecord(str(path), 40, 25.0, 320, 240)
    with open_video(path) as reader:
        assert ThreeClipDataset([record], decode_size=160)._decoded_size(reader) == (160, 213)
        small = reader.get_frames([3, 30], size=(160, 213)).float()
        full = resize_clip(reader.get_frames([3, 30]), (160, 213)).float()
    assert small.shape == (2, 160, 213, 3)
    assert (small - full).abs().mean() < 6 and abs(float((small - full).mean())) < 1  # no brightness shift
    assert (small[0] - full[1]).abs().mean() > 20  # a wrong frame would be far off
    item = ThreeClipDataset([record], clip_len=8, crop_size=112, seed=5, decode_size=160)[0]
    assert item["clips"].shape == (3, 8, 112, 112, 3)


def test_decode_size_config_key_is_opt_in_and_checked():
    from mlfo.config.presets import load_config
    from mlfo.errors import MLFOError

    assert load_config("demo_cpu").data.decode_size is None  # the exact path by default
    assert load_config("demo_cpu", ["data.decode_size=160"]).data.decode_size == 160
    with pytest.raises(MLFOError, match=r"data.decode_size: must be at least data.crop_size \(48\), got 40"):
        load_config("demo_cpu", ["data.decode_size=40"])
