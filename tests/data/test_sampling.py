"""The MLFO three-clip sampler and the evaluation samplers (method.md §1)."""

import numpy as np
import pytest

from mlfo.data.sampling import (
    sample_mlfo_indices,
    sample_mlfo_span,
    sliding_window_indices,
    sliding_window_starts,
    uniform_clip_indices,
    uniform_clip_starts,
)
from mlfo.errors import MLFOError


def _draws(n=1500, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        clip_len = int(rng.integers(1, 17))
        num_frames = int(rng.integers(2 * clip_len + 1, 8 * clip_len + 40))
        r_max = float(rng.choice([1, 1.5, 2, 3, 4]))
        yield num_frames, clip_len, r_max, rng


def test_clips_tile_the_span_and_overview_covers_both_at_half_rate():
    for num_frames, clip_len, r_max, rng in _draws():
        state = rng.bit_generator.state
        span, rate = sample_mlfo_span(num_frames, clip_len, r_max, rng)
        rng.bit_generator.state = state  # same draw through the public function
        a, b, g = sample_mlfo_indices(num_frames, clip_len, r_max, rng)
        assert len(a) == len(b) == len(g) == clip_len
        assert a + b == span
        assert all(g[k] == span[2 * k] for k in range(clip_len))
        assert all(0 <= i < num_frames for i in span)
        assert 1.0 <= rate <= min(r_max, num_frames / (2 * clip_len)) + 1e-9
        # A then B: strictly increasing, steps of floor(r) or ceil(r) (rounding of s + r*k),
        # i.e. equally spaced up to rounding, and B continues where A stops.
        steps = np.diff(span)
        assert steps.min() >= np.floor(rate) and steps.max() <= np.ceil(rate)
        assert np.all(steps >= 1)
        # The indices are s + r*k rounded, not clamped: the whole span fits.
        expected = np.rint(span[0] + rate * np.arange(2 * clip_len))
        assert np.array_equal(span, np.minimum(expected, num_frames - 1))
        # G steps twice as far (half the frame rate).
        g_steps = np.diff(g)
        assert np.all(g_steps >= np.floor(2 * rate)) and np.all(g_steps <= np.ceil(2 * rate))


def test_rate_and_start_cover_their_ranges():
    rng = np.random.default_rng(1)
    draws = [sample_mlfo_span(200, 8, 3, rng) for _ in range(2000)]
    rates = np.array([r for _, r in draws])
    starts = np.array([s[0] for s, _ in draws])
    assert rates.min() < 1.1 and rates.max() > 2.9  # r ~ U[1, 3]
    assert starts.min() == 0 and starts.max() > 150  # s anywhere the span fits
    # F / 2T caps the rate for short videos.
    short = [sample_mlfo_span(40, 8, 3, rng)[1] for _ in range(500)]
    assert max(short) <= 40 / 16 and max(short) > 2.3


def test_deterministic_under_seed():
    draw = lambda seed: [sample_mlfo_indices(100, 8, 3, np.random.default_rng(seed)) for _ in range(3)]
    assert draw(5) == draw(5)
    many = {tuple(sample_mlfo_indices(100, 8, 3, np.random.default_rng(s))[0]) for s in range(20)}
    assert len(many) > 10


@pytest.mark.parametrize("num_frames", [0, 5, 16])
def test_too_short_video_is_a_clear_error(num_frames):
    with pytest.raises(MLFOError, match="too short.*16"):
        sample_mlfo_indices(num_frames, 8, 3, np.random.default_rng(0))


def test_shortest_usable_video():
    for seed in range(50):
        a, b, _ = sample_mlfo_indices(17, 8, 3, np.random.default_rng(seed))
        span = a + b  # 16 distinct frames out of 17
        assert len(set(span)) == 16 and span == sorted(span) and span[-1] <= 16


def test_uniform_clips_spread_from_first_to_last_start():
    assert uniform_clip_starts(100, 16, 5) == [0, 21, 42, 63, 84]
    assert uniform_clip_starts(100, 16, 1) == [42]
    assert uniform_clip_starts(100, 16, 3, frame_step=2) == [0, 34, 69]
    clips = uniform_clip_indices(100, 16, 3, frame_step=2)
    assert clips[-1][-1] == 99 and all(np.all(np.diff(c) == 2) for c in clips)
    # Shorter than a clip: every clip starts at 0, frames past the end repeat the last one.
    short = uniform_clip_indices(5, 8, 2)
    assert short == [[0, 1, 2, 3, 4, 4, 4, 4]] * 2


def test_sliding_windows():
    assert sliding_window_starts(40, 16, 8) == [0, 8, 16, 24]
    assert sliding_window_starts(10, 16, 8) == [0]
    windows = sliding_window_indices(40, 8, 16, frame_step=2)
    assert windows == [list(range(0, 16, 2)), list(range(16, 32, 2))]
    with pytest.raises(MLFOError):
        sliding_window_starts(40, 16, 0)


def test_the_minimum_frames_rule_is_one_rule():
    """The sampler, the training dataset, the method and `mlfo data scan` agree: more than 2T."""
    import argparse

    from mlfo.commands import data as data_command
    from mlfo.config import load_config
    from mlfo.data.datasets import ThreeClipDataset
    from mlfo.data.sampling import mlfo_min_frames
    from mlfo.method import MLFOMethod

    for t in (4, 16):
        rng = np.random.default_rng(0)
        with pytest.raises(MLFOError, match="video too short"):
            sample_mlfo_indices(mlfo_min_frames(t), t, 2.0, rng)
        assert len(sample_mlfo_indices(mlfo_min_frames(t) + 1, t, 2.0, rng)[2]) == t
        assert ThreeClipDataset([], clip_len=t, crop_size=8).min_frames == mlfo_min_frames(t) == 2 * t
    cfg = load_config("demo_cpu", ["data.clip_len=8"])
    assert MLFOMethod.min_frames.fget(argparse.Namespace(cfg=cfg)) == mlfo_min_frames(8)
    parser = argparse.ArgumentParser()
    data_command.register(parser.add_subparsers())
    assert parser.parse_args(["data", "scan", "x"]).min_frames == mlfo_min_frames(16)
