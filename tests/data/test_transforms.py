"""Clip augmentations: per-clip geometry, per-clip / per-frame colour, eval crops."""

import numpy as np
import pytest
import torch
from PIL import Image

from mlfo.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    _ORDERS,
    ColorAugment,
    RandomResizedCropFlip,
    _gray,
    eval_views,
    five_crop,
    hsv_to_rgb,
    normalize_clips,
    random_resized_crop_params,
    resize_short_side,
    resized_crop,
    rgb_to_hsv,
    shift_hue,
    ten_crop,
    three_crop,
)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _random_clips(n=2, t=6, h=40, w=52, seed=0):
    return torch.randint(0, 256, (n, t, h, w, 3), dtype=torch.uint8, generator=_gen(seed))


def _frame_index_clip(t=6, h=40, w=52):
    """Frame k is the same random image shifted in brightness by k: geometry must match."""
    base = torch.randint(0, 200, (h, w, 3), dtype=torch.uint8, generator=_gen(3))
    return torch.stack([base + k * 8 for k in range(t)])


def test_crop_params_stay_in_frame_and_follow_scale_and_ratio():
    g = _gen()
    for _ in range(500):
        top, left, h, w = random_resized_crop_params(60, 80, (0.5, 1.0), (3 / 4, 4 / 3), g)
        assert 0 <= top and top + h <= 60 and 0 <= left and left + w <= 80
        assert 0.45 <= h * w / (60 * 80) <= 1.0
        assert 3 / 4 - 0.05 <= w / h <= 4 / 3 + 0.05


def test_crop_fallback_keeps_aspect_ratio():
    # A very wide frame: no crop of area >= 0.9 with aspect <= 4/3 fits -> centre crop.
    top, left, h, w = random_resized_crop_params(20, 200, (0.9, 1.0), (3 / 4, 4 / 3), _gen())
    assert (h, w) == (20, 27) and top == 0 and left == (200 - 27) // 2


def test_geometry_is_shared_by_all_frames_of_a_clip():
    clip = _frame_index_clip()
    aug = RandomResizedCropFlip(24, scale=(0.5, 1.0))
    g = _gen()
    for _ in range(20):
        out = aug(clip, g).int()
        assert out.shape == (6, 24, 24, 3) and out.dtype == torch.int32
        # Same crop + flip for every frame: frames differ only by the brightness shift.
        diffs = out[1:] - out[:-1]
        assert (diffs - 8).abs().max() <= 1
    # and the parameters change between calls (draws from the generator)
    outs = [aug(clip, g) for _ in range(4)]
    assert not all(torch.equal(outs[0], o) for o in outs[1:])


def test_flip_probability_half():
    ramp = (torch.arange(40) * 6).to(torch.uint8).view(1, 1, 40, 1).expand(3, 30, 40, 3)  # brighter to the right
    aug = RandomResizedCropFlip(16)
    g = _gen()
    flipped = []
    for _ in range(200):
        out = aug(ramp, g).int()
        left, right = out[:, :, 0, 0], out[:, :, -1, 0]
        assert bool((left < right).all()) or bool((left > right).all())  # all frames agree
        flipped.append(bool((left > right).all()))
    assert 70 < sum(flipped) < 130


def test_geometry_batched_draws_per_clip_and_is_reproducible():
    clips = _frame_index_clip().expand(4, -1, -1, -1, -1)  # 4 identical clips
    aug = RandomResizedCropFlip(20)
    out = aug(clips, _gen(7))
    assert out.shape == (4, 6, 20, 20, 3) and out.dtype == torch.uint8
    assert not all(torch.equal(out[0], out[i]) for i in range(1, 4))  # own params per clip
    assert torch.equal(out, aug(clips, _gen(7)))


def test_resized_crop_matches_explicit_crop_flip_resize():
    clip = _random_clips(1)[0]
    out = resized_crop(clip, 4, 6, 30, 30, 30, flip=True)  # no resize: pure crop + flip
    assert torch.equal(out, clip[:, 4:34, 6:36].flip(2))
    # Shrinking is antialiased (close to PIL's box-filtered bilinear), not point-sampled.
    frame = clip[0].numpy()
    ours = resized_crop(clip[:1], 0, 0, 40, 52, (10, 13))[0].int().numpy()
    pil = np.asarray(Image.fromarray(frame).resize((13, 10), Image.BILINEAR)).astype(int)
    assert np.abs(ours - pil).mean() < 3


def test_normalize_clips_layout_and_stats():
    clips = _random_clips()
    out = normalize_clips(clips)
    assert out.shape == (2, 3, 6, 40, 52) and out.dtype == torch.float32
    expected = (clips[0, 2, 5, 7, 1] / 255 - IMAGENET_MEAN[1]) / IMAGENET_STD[1]
    assert torch.isclose(out[0, 1, 2, 5, 7], expected)
    # Pixels at the ImageNet mean map to 0.
    mean_pixel = torch.tensor([round(m * 255) for m in IMAGENET_MEAN], dtype=torch.uint8)
    flat = mean_pixel.expand(1, 1, 2, 2, 3).contiguous()
    assert normalize_clips(flat).abs().max() < 0.01


def test_hsv_round_trip_and_agreement_with_pil():
    x = torch.rand(5, 3, 8, 8, generator=_gen())
    assert torch.allclose(hsv_to_rgb(rgb_to_hsv(x)), x, atol=1e-5)
    img = (x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    pil = np.asarray(Image.fromarray(img).convert("HSV")).astype(np.float32) / 255
    ours = rgb_to_hsv(torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255)[0].permute(1, 2, 0).numpy()
    assert np.abs(ours - pil).max() < 2 / 255


def _denormalize(x):
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1, 1)
    return x * std + mean


def test_color_augment_shapes_range_and_determinism():
    clips = _random_clips(3, 5, 12, 10)
    aug = ColorAugment()
    out = aug(clips, _gen(1))
    assert out.shape == (3, 3, 5, 12, 10) and out.dtype == torch.float32
    raw = _denormalize(out)
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5
    assert torch.equal(out, aug(clips, _gen(1)))
    assert not torch.equal(out, aug(clips, _gen(2)))


def test_per_clip_colour_keeps_identical_frames_identical_per_frame_does_not():
    frame = torch.randint(0, 256, (1, 1, 10, 10, 3), dtype=torch.uint8, generator=_gen())
    clips = frame.expand(4, 8, -1, -1, -1).contiguous()  # 4 clips of 8 identical frames
    per_clip = ColorAugment(per_frame_color=False)(clips, _gen(0))
    assert torch.allclose(per_clip, per_clip[:, :, :1].expand_as(per_clip), atol=1e-6)
    assert not torch.allclose(per_clip[0], per_clip[1])  # clips still differ from each other
    per_frame = ColorAugment(per_frame_color=True)(clips, _gen(0))
    frame_differs = [(per_frame[n, :, k] - per_frame[n, :, 0]).abs().max() > 1e-3 for n in range(4) for k in range(1, 8)]
    assert sum(frame_differs) > 20


def test_grayscale_copies_one_channel():
    clips = _random_clips(8, 2, 6, 6)
    aug = ColorAugment(per_frame_color=True, p_gray=1.0, p_jitter=0.0)
    raw = _denormalize(aug(clips, _gen()))
    source = clips.permute(0, 4, 1, 2, 3).float() / 255  # (N, 3, T, H, W)
    chosen = set()
    for n in range(8):
        for t in range(2):
            img = raw[n, :, t]
            assert torch.allclose(img[0], img[1], atol=1e-5) and torch.allclose(img[0], img[2], atol=1e-5)
            match = [c for c in range(3) if torch.allclose(img[0], source[n, c, t], atol=1e-5)]
            assert match
            chosen.update(match)
    assert chosen == {0, 1, 2}


def test_jitter_off_is_plain_normalisation():
    clips = _random_clips()
    out = ColorAugment(p_gray=0.0, p_jitter=0.0)(clips, _gen())
    assert torch.allclose(out, normalize_clips(clips), atol=1e-6)


def test_single_jitter_ops_match_their_definitions():
    clips = _random_clips(2, 3, 8, 8)
    x = clips.permute(0, 4, 1, 2, 3).float() / 255
    # brightness only, factor in [0.5, 1.5]: output = clamp(x * f), f shared by each frame's pixels
    out = _denormalize(ColorAugment(p_gray=0, brightness=0.5, contrast=0, saturation=0, hue=0)(clips, _gen()))
    ratio = out[:, :, :, 0, 0] / x[:, :, :, 0, 0].clamp(min=1e-3)
    assert ratio.min() > 0.45 and ratio.max() < 1.55
    # hue only keeps the HSV value (max channel) and saturation
    out = _denormalize(ColorAugment(p_gray=0, brightness=0, contrast=0, saturation=0, hue=0.25)(clips, _gen()))
    assert torch.allclose(out.max(1).values, x.max(1).values, atol=1e-4)


def test_eval_crops():
    clip = _random_clips(1, 4, 30, 50)[0]
    resized = resize_short_side(clip, 24)
    assert resized.shape == (4, 24, 40, 3)
    assert resize_short_side(clip.transpose(1, 2), 24).shape == (4, 40, 24, 3)
    crops = three_crop(resized, 24)
    assert [c.shape for c in crops] == [(4, 24, 24, 3)] * 3
    assert torch.equal(crops[0], resized[:, :, :24]) and torch.equal(crops[2], resized[:, :, -24:])
    five = five_crop(resized, 20)
    ten = ten_crop(resized, 20)
    assert len(ten) == 10
    for k in range(5):
        assert torch.equal(ten[k], five[k]) and torch.equal(ten[k + 5], five[k].flip(2))
    assert torch.equal(five[0], resized[:, :20, :20]) and torch.equal(five[3], resized[:, -20:, -20:])
    assert torch.equal(five[4], resized[:, 2:22, 10:30])
    for mode, views in (("center", 1), ("three", 3), ("ten", 10)):
        out = eval_views(clip, 24, 20, mode)
        assert out.shape == (views, 4, 20, 20, 3) and out.dtype == torch.uint8
    with pytest.raises(ValueError):
        eval_views(clip, 24, 20, "five")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_runs_on_cuda_without_a_host_synchronisation():
    clips = _random_clips(6).cuda()
    expected = ColorAugment()(clips.cpu(), [_gen(0), _gen(1)])
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any synchronising call inside raises
    try:
        out = ColorAugment()(clips, [_gen(0), _gen(1)])
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.device.type == "cuda" and out.shape == (6, 3, 6, 40, 52)
    assert torch.allclose(out.cpu(), expected, atol=1e-4)  # same parameters on every device
    assert RandomResizedCropFlip(16)(clips).device.type == "cuda"


# Today's per-video colour augmentation before it was batched (mlfo 9320475), verbatim but
# for the class around it: the batched one must give the very same numbers on CPU, since
# ``mlfo demo`` must keep printing the same table.
def _reference_draw(self, n, t, generator):
    device = generator.device if generator is not None else torch.device("cpu")
    units = n * t if self.per_frame_color else n

    def rand(*shape):
        return torch.rand(units, *shape, generator=generator, device=device)

    b, c, s, h = self.strengths
    params = {
        "gray": rand() < self.p_gray,
        "channel": (rand() * 3).long().clamp_(max=2),
        "jitter": rand() < self.p_jitter,
        "factors": torch.stack(
            [1 + (2 * rand() - 1) * b, 1 + (2 * rand() - 1) * c, 1 + (2 * rand() - 1) * s, (2 * rand() - 1) * h], 1
        ),
        "order": (rand() * len(_ORDERS)).long().clamp_(max=len(_ORDERS) - 1),
    }
    if not self.per_frame_color:
        params = {k: v.repeat_interleave(t, 0) for k, v in params.items()}
    return params


def _reference_color(self, clips, generator=None):
    n, t, h, w, _ = clips.shape
    m = n * t
    p = {k: v.to(clips.device) for k, v in _reference_draw(self, n, t, generator).items()}
    x = torch.empty((m, 3, h, w), dtype=torch.float32, device=clips.device)
    x.copy_(clips.reshape(m, h, w, 3).permute(0, 3, 1, 2)).div_(255)
    rows = torch.nonzero(p["gray"]).flatten()
    if rows.numel():
        x[rows] = x[rows, p["channel"][rows]].unsqueeze(1)
    orders = torch.tensor(_ORDERS, device=x.device)[p["order"]]
    factors = p["factors"]
    for position in range(4):
        op = torch.where(p["jitter"], orders[:, position], -1)
        one = torch.ones(m, device=x.device)
        scale = torch.where(op == 0, factors[:, 0], one)
        scale = torch.where(op == 1, factors[:, 1], scale)
        scale = torch.where(op == 2, factors[:, 2], scale).view(m, 1, 1, 1)
        w_mean = torch.where(op == 1, 1 - factors[:, 1], 0 * one).view(m, 1, 1, 1)
        w_luma = torch.where(op == 2, 1 - factors[:, 2], 0 * one).view(m, 1, 1, 1)
        if bool(((op == 1) | (op == 2)).any()):
            luma = _gray(x)
            reference = luma.mean(dim=(2, 3), keepdim=True).mul_(w_mean)
            reference = luma.mul_(w_luma).add_(reference)
            x.mul_(scale).add_(reference).clamp_(0, 1)
        else:
            x.mul_(scale).clamp_(0, 1)
        rows = torch.nonzero(op == 3).flatten()
        if rows.numel():
            x[rows] = shift_hue(x[rows], factors[rows, 3])
    mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
    inv_std = 1 / torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
    x.sub_(mean).mul_(inv_std)
    return x.view(n, t, 3, h, w).permute(0, 2, 1, 3, 4).contiguous()


@pytest.mark.parametrize("settings", [{}, {"per_frame_color": False}, {"p_gray": 0.9, "p_jitter": 0.6},
                                      {"p_gray": 0.0, "brightness": 0.0, "hue": 0.4}])
@pytest.mark.parametrize("threads", [1, 2])
def test_batched_colour_equals_todays_per_video_result_bit_for_bit(settings, threads):
    """One call over 5 videos x 3 clips with a generator per video == 5 calls of the old
    per-video code with the same seeds (torch.equal: every bit), also with 2 threads."""
    aug = ColorAugment(**settings)
    videos = _random_clips(15, 4, 32, 32, seed=3)  # 3 clips per video, 32x32 (the demo's crop)
    seeds = [11, 7, 11, 2**40, 0]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        batched = aug._apply(videos, [_gen(s) for s in seeds])  # the one-pass form devices run
        assert torch.equal(aug(videos, [_gen(s) for s in seeds]), batched)  # per video on CPU
        per_video = torch.cat([_reference_color(aug, videos[3 * i : 3 * i + 3], _gen(s)) for i, s in enumerate(seeds)])
    finally:
        torch.set_num_threads(before)
    assert torch.equal(batched, per_video)
    assert not torch.equal(batched[:3], batched[6:9])  # same seed, other video pixels
    assert torch.equal(aug(videos[:3], [_gen(11)]), batched[:3])  # a video's colours ignore the batch


def test_colour_reads_no_device_value_on_the_host():
    """By construction: on the meta device a tensor has no values, so any host
    synchronisation inside (``.item()``, ``bool()``, ``nonzero``, a mask index) raises. The
    old per-video code does raise there; the batched one runs through."""
    clips = _random_clips(6, 4, 16, 16).to("meta")
    out = ColorAugment()(clips, [_gen(0), _gen(1)])
    assert out.device.type == "meta" and out.shape == (6, 3, 4, 16, 16)
    assert normalize_clips(clips).device.type == "meta"
    with pytest.raises((NotImplementedError, RuntimeError)):
        _reference_color(ColorAugment(), clips, _gen(0))


def test_colour_generators_must_split_the_clips_into_equal_groups():
    with pytest.raises(ValueError, match="equal groups"):
        ColorAugment()(_random_clips(4, 2, 8, 8), [_gen(0), _gen(1), _gen(2)])


def test_fast_hue_shift_matches_hsv_round_trip():
    from mlfo.data.transforms import shift_hue

    x = torch.rand(6, 3, 9, 9, generator=_gen())
    x[0] = 0.5  # grey pixels: no hue
    shift = torch.tensor([0.1, -0.25, 0.25, 0.0, 0.6, -0.9])
    hsv = rgb_to_hsv(x)
    hsv[:, 0] = (hsv[:, 0] + shift.view(-1, 1, 1)) % 1
    assert torch.allclose(shift_hue(x, shift), hsv_to_rgb(hsv), atol=1e-5)
    assert torch.allclose(shift_hue(x, torch.zeros(6)), x, atol=1e-5)


def test_resize_same_on_uint8_and_float_paths():
    clip = _random_clips(1, 3, 40, 52)[0]
    fast = resized_crop(clip, 2, 3, 30, 40, 16).int()  # CPU: native uint8 interpolation
    x = clip[:, 2:32, 3:43].permute(0, 3, 1, 2).float()
    ref = torch.nn.functional.interpolate(x, size=(16, 16), mode="bilinear", antialias=True, align_corners=False)
    assert (fast - ref.round().permute(0, 2, 3, 1).int()).abs().max() <= 1


def test_fused_jitter_equals_the_four_ops_applied_in_each_images_order():
    """Per-image loop with torchvision's definitions vs the batched implementation."""
    from mlfo.data.transforms import _ORDERS, shift_hue

    clips = _random_clips(2, 3, 6, 6)
    aug = ColorAugment(per_frame_color=True, p_gray=0.3, p_jitter=0.8)
    out = _denormalize(aug(clips, _gen(4)))
    p = aug._draw(2, 3, _gen(4))
    images = clips.reshape(6, 6, 6, 3).permute(0, 3, 1, 2).float() / 255
    luma = lambda im: 0.299 * im[0] + 0.587 * im[1] + 0.114 * im[2]
    for m in range(6):
        im = images[m].clone()
        if p["gray"][m]:
            im = im[p["channel"][m]].expand(3, -1, -1).clone()
        if p["jitter"][m]:
            for op in _ORDERS[p["order"][m]]:
                f = p["factors"][m, op]
                if op == 0:
                    im = (im * f).clamp(0, 1)
                elif op == 1:
                    im = (f * im + (1 - f) * luma(im).mean()).clamp(0, 1)
                elif op == 2:
                    im = (f * im + (1 - f) * luma(im)).clamp(0, 1)
                else:
                    im = shift_hue(im[None], f.view(1))[0]
        n, t = divmod(m, 3)
        assert torch.allclose(out[n, :, t], im, atol=1e-5), m
