"""Clip augmentations on uint8 tensors, batched, on whatever device the clips live on.

Geometry (random resized crop + horizontal flip) is one set of parameters per clip,
shared by its frames, and runs in the DataLoader workers: it shrinks the clip before it
is batched. Colour (random channel "grayscale" + colour jitter) runs batched on the
training device; as in the reference implementation it can draw its parameters per
frame (``per_frame_color=True``, the default) or once per clip.

Layouts: clips are uint8 ``(T, H, W, 3)`` (one clip) or ``(N, T, H, W, 3)`` (a batch),
channels last as decoded; the model input is float ``(N, 3, T, H, W)``, normalised.
"""

from __future__ import annotations

import math
from itertools import permutations

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ----------------------------------------------------------------------------- geometry
def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def random_resized_crop_params(
    height: int,
    width: int,
    scale: tuple[float, float] = (0.5, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
    attempts: int = 10,
) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a crop with area ~ U(scale) of the frame and aspect ~ logU(ratio).

    After ``attempts`` misses, fall back to the largest centred crop with the target's
    aspect ratio clamped into ``ratio`` (i.e. short-side resize + centre crop for a square
    target), so the picture is never stretched.
    """
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(attempts):
        target_area = area * _uniform(scale[0], scale[1], generator)
        aspect = math.exp(_uniform(log_ratio[0], log_ratio[1], generator))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (), generator=generator))
            left = int(torch.randint(0, width - w + 1, (), generator=generator))
            return top, left, h, w
    # Fallback: centre crop, as large as possible, aspect within the allowed range.
    frame_ratio = width / height
    if frame_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif frame_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def resize_clip(clip: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of uint8 (..., H, W, 3) frames to ``size`` = (h, w); antialiased when shrinking."""
    lead = clip.shape[:-3]
    h, w = clip.shape[-3:-1]
    if (h, w) == tuple(size):
        return clip
    x = clip.reshape(-1, h, w, 3).permute(0, 3, 1, 2)  # (M, 3, h, w), channels-last in memory
    antialias = size[0] < h or size[1] < w
    if x.device.type == "cpu":
        # PyTorch's native uint8 channels-last path: ~10x faster than going through float.
        x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=antialias)
    else:
        x = F.interpolate(x.float(), size=tuple(size), mode="bilinear", align_corners=False, antialias=antialias)
        x = x.round_().clamp_(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).reshape(*lead, size[0], size[1], 3)


def resized_crop(clip: torch.Tensor, top: int, left: int, h: int, w: int, size: int | tuple[int, int], flip: bool = False) -> torch.Tensor:
    """Crop uint8 (..., H, W, 3) frames to the box, resize it to ``size`` and optionally mirror it.

    Crops before resizing so only the kept pixels are interpolated.
    """
    size = (size, size) if isinstance(size, int) else tuple(size)
    out = resize_clip(clip[..., top : top + h, left : left + w, :], size)
    return out.flip(-2) if flip else out


class RandomResizedCropFlip:
    """Random resized crop + horizontal flip with one set of parameters per clip.

    Call on uint8 (T, H, W, 3) or (N, T, H, W, 3); returns uint8 (..., S, S, 3).
    """

    def __init__(self, size: int, scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3), p_flip: float = 0.5):
        self.size, self.scale, self.ratio, self.p_flip = size, tuple(scale), tuple(ratio), p_flip

    def __call__(self, clips: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if clips.dim() == 4:
            return self._one(clips, generator)
        return torch.stack([self._one(c, generator) for c in clips])

    def _one(self, clip: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        height, width = clip.shape[-3:-1]
        box = random_resized_crop_params(height, width, self.scale, self.ratio, generator)
        flip = bool(torch.rand((), generator=generator) < self.p_flip)
        return resized_crop(clip, *box, self.size, flip=flip)

    def __repr__(self) -> str:
        return f"RandomResizedCropFlip(size={self.size}, scale={self.scale}, ratio={self.ratio}, p_flip={self.p_flip})"


# ----------------------------------------------------------------------------- evaluation geometry
def resize_short_side(clip: torch.Tensor, size: int) -> torch.Tensor:
    """Resize uint8 (..., H, W, 3) so the shorter side is ``size``, keeping the aspect ratio."""
    h, w = clip.shape[-3:-1]
    if h <= w:
        new = (size, max(1, int(round(w * size / h))))
    else:
        new = (max(1, int(round(h * size / w))), size)
    return resize_clip(clip, new)


def _crop(clip: torch.Tensor, top: int, left: int, size: int) -> torch.Tensor:
    return clip[..., top : top + size, left : left + size, :]


def center_crop(clip: torch.Tensor, size: int) -> torch.Tensor:
    h, w = clip.shape[-3:-1]
    if h < size or w < size:
        raise ValueError(f"crop {size} larger than the frame {h}x{w}")
    return _crop(clip, (h - size) // 2, (w - size) // 2, size)


def three_crop(clip: torch.Tensor, size: int) -> list[torch.Tensor]:
    """Three crops along the longer side (start, centre, end): covers wide frames."""
    h, w = clip.shape[-3:-1]
    if w >= h:
        top = (h - size) // 2
        return [_crop(clip, top, left, size) for left in (0, (w - size) // 2, w - size)]
    left = (w - size) // 2
    return [_crop(clip, top, left, size) for top in (0, (h - size) // 2, h - size)]


def five_crop(clip: torch.Tensor, size: int) -> list[torch.Tensor]:
    """Four corners then the centre."""
    h, w = clip.shape[-3:-1]
    corners = [(0, 0), (0, w - size), (h - size, 0), (h - size, w - size)]
    return [_crop(clip, t, l, size) for t, l in corners] + [center_crop(clip, size)]


def ten_crop(clip: torch.Tensor, size: int) -> list[torch.Tensor]:
    """The five crops and their horizontal mirrors."""
    crops = five_crop(clip, size)
    return crops + [c.flip(-2) for c in crops]


CROP_MODES = {"center": lambda c, s: [center_crop(c, s)], "three": three_crop, "ten": ten_crop}


def eval_views(clip: torch.Tensor, resize: int, crop_size: int, crop_mode: str = "center") -> torch.Tensor:
    """Deterministic test-time views of uint8 (T, H, W, 3): uint8 (V, T, S, S, 3), V = 1 / 3 / 10."""
    if crop_mode not in CROP_MODES:
        raise ValueError(f"crop_mode must be one of {', '.join(CROP_MODES)}, got {crop_mode!r}")
    resized = resize_short_side(clip, resize)
    return torch.stack(CROP_MODES[crop_mode](resized, crop_size))


# ----------------------------------------------------------------------------- normalisation
def _to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU tensor on ``device`` without a host synchronisation (pinned, non-blocking on CUDA)."""
    if device.type == "cuda":
        x = x.pin_memory()
    return x.to(device, non_blocking=True)


def normalize_clips(clips: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """uint8 (N, T, H, W, 3) -> float (N, 3, T, H, W), ImageNet mean/std normalised."""
    x = clips.permute(0, 4, 1, 2, 3).float().div_(255)
    return _normalize_channels_first(x, mean, std)


def _normalize_channels_first(x: torch.Tensor, mean, std) -> torch.Tensor:
    m = _to_device(torch.tensor(mean, dtype=x.dtype), x.device).view(1, 3, 1, 1, 1)
    s = _to_device(torch.tensor(std, dtype=x.dtype), x.device).view(1, 3, 1, 1, 1)
    return (x - m) / s


# ----------------------------------------------------------------------------- colour
def _gray(x: torch.Tensor) -> torch.Tensor:
    """Luma of (M, 3, H, W) images, (M, 1, H, W) (ITU-R 601-2, as torchvision)."""
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2]).add_(x[:, 2:3], alpha=0.114)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """(M, 3, H, W) RGB in [0, 1] -> HSV in [0, 1] (hue as a fraction of a turn)."""
    r, g, b = x.unbind(1)
    maxc = torch.maximum(torch.maximum(r, g), b)
    chroma = maxc - torch.minimum(torch.minimum(r, g), b)
    s = chroma / maxc.masked_fill(maxc == 0, 1)
    return torch.stack((_hue_sextant(r, g, b, maxc, chroma) / 6, s, maxc), 1)


def _hue_sextant(r, g, b, maxc, chroma) -> torch.Tensor:
    """Hue in sextants [0, 6) (0 where the pixel is grey)."""
    h = torch.where(maxc == r, g - b, torch.where(maxc == g, (b - r).add_(chroma, alpha=2), (r - g).add_(chroma, alpha=4)))
    return h.div_(chroma.masked_fill(chroma == 0, 1)).remainder_(6)


def _from_hue_sextant(h: torch.Tensor, value: torch.Tensor, chroma: torch.Tensor) -> torch.Tensor:
    """RGB (M, 3, H, W) from hue in sextants, value (max) and chroma (max - min):
    channel n of (5, 3, 1) is v - c * clamp(min(k, 4 - k), 0, 1), k = (n + h) mod 6."""
    channels = []
    for n in (5.0, 3.0, 1.0):
        k = (h + n).remainder_(6)
        k = torch.minimum(k, 4 - k).clamp_(0, 1)
        channels.append(value - k.mul_(chroma))
    return torch.stack(channels, 1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """(M, 3, H, W) HSV in [0, 1] -> RGB in [0, 1]."""
    h, s, v = x.unbind(1)
    return _from_hue_sextant(h * 6, v, s * v)


def shift_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the HSV hue of (M, 3, H, W) RGB images in [0, 1] by ``shift`` (M,) turns.

    Same result as ``hsv_to_rgb`` of the shifted ``rgb_to_hsv``, without materialising
    saturation: value and chroma survive a hue rotation unchanged.
    """
    r, g, b = x.unbind(1)
    maxc = torch.maximum(torch.maximum(r, g), b)
    chroma = maxc - torch.minimum(torch.minimum(r, g), b)
    h = _hue_sextant(r, g, b, maxc, chroma).add_(shift.view(-1, 1, 1) * 6)
    return _from_hue_sextant(h, maxc, chroma)


_ORDERS = list(permutations(range(4)))  # 24 orders of the four jitter ops


class ColorAugment:
    """Random channel "grayscale", colour jitter in random order, ImageNet normalisation.

    ``per_frame_color=True`` draws every parameter (grayscale on/off and channel, the four
    jitter factors, their order) per frame, as the reference implementation does;
    ``False`` draws them once per clip. Runs batched on ``clips.device``.

    Parameters are drawn on the CPU from ``generator``: one CPU generator for all clips,
    or a list of them, one per equal group of consecutive clips (the training step passes
    one per video, so each video's colours are keyed by its own seed whatever the batch).
    Drawing on the CPU also decides there which images each op touches, so the device
    work is a fixed sequence of kernels with no host synchronisation, and the same seed
    gives the same augmentation on every device.

    ``(clips uint8 (N, T, H, W, 3), generator=None) -> float (N, 3, T, H, W)``
    """

    def __init__(
        self,
        per_frame_color: bool = True,
        p_gray: float = 0.5,
        brightness: float = 0.5,
        contrast: float = 0.5,
        saturation: float = 0.5,
        hue: float = 0.25,
        p_jitter: float = 1.0,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    ):
        self.per_frame_color = per_frame_color
        self.p_gray, self.p_jitter = p_gray, p_jitter
        self.strengths = (brightness, contrast, saturation, hue)
        self.mean, self.std = mean, std

    def _draw(self, n: int, t: int, generator: torch.Generator | None) -> dict[str, torch.Tensor]:
        """Parameters per image, shape (N*T, ...), on the CPU: per clip they repeat over T."""
        if generator is not None and generator.device.type != "cpu":
            raise ValueError(f"ColorAugment: pass CPU generators (parameters are drawn on the CPU), "
                             f"got one on {generator.device}")
        units = n * t if self.per_frame_color else n

        def rand(*shape):
            return torch.rand(units, *shape, generator=generator)

        b, c, s, h = self.strengths
        params = {
            "gray": rand() < self.p_gray,
            "channel": (rand() * 3).long().clamp_(max=2),
            "jitter": rand() < self.p_jitter,
            # factor 1 + U(-x, x) for brightness / contrast / saturation; hue shift U(-h, h)
            "factors": torch.stack(
                [1 + (2 * rand() - 1) * b, 1 + (2 * rand() - 1) * c, 1 + (2 * rand() - 1) * s, (2 * rand() - 1) * h], 1
            ),
            "order": (rand() * len(_ORDERS)).long().clamp_(max=len(_ORDERS) - 1),
        }
        if not self.per_frame_color:
            params = {k: v.repeat_interleave(t, 0) for k, v in params.items()}
        return params

    def _plan(self, n: int, t: int, generators: list) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """Everything the device needs, decided on the CPU: one float and one int64 tensor
        (packed, so two copies move them) and the sizes to unpack them."""
        draws = [self._draw(n // len(generators), t, g) for g in generators]
        p = {k: torch.cat([d[k] for d in draws]) for k in draws[0]}
        m = n * t
        gray_rows = torch.nonzero(p["gray"]).flatten()
        # Jitter, four positions; each image applies the op its order puts at each position.
        # Brightness, contrast and saturation are all "x = f * x + (1 - f) * reference"
        # (reference 0, mean luma, luma): per position, weights (scale, mean, luma) per image.
        orders = torch.tensor(_ORDERS)[p["order"]]  # (M, 4)
        factors = p["factors"]
        one = torch.ones(m)
        weights, hue_rows = [], []
        for position in range(4):
            op = torch.where(p["jitter"], orders[:, position], -1)  # -1: no jitter
            scale = torch.where(op == 0, factors[:, 0], one)
            scale = torch.where(op == 1, factors[:, 1], scale)
            scale = torch.where(op == 2, factors[:, 2], scale)
            w_mean = torch.where(op == 1, 1 - factors[:, 1], 0 * one)
            w_luma = torch.where(op == 2, 1 - factors[:, 2], 0 * one)
            weights.append(torch.stack([scale, w_mean, w_luma]))
            hue_rows.append(torch.nonzero(op == 3).flatten())
        normalise = [torch.tensor(self.mean), 1 / torch.tensor(self.std)]
        floats = torch.cat([torch.stack(weights).flatten(), *normalise, *(factors[rows, 3] for rows in hue_rows)])
        longs = torch.cat([gray_rows, p["channel"][gray_rows], *hue_rows])
        return floats, longs, [len(gray_rows), *(len(rows) for rows in hue_rows)]

    def __call__(self, clips: torch.Tensor, generator=None) -> torch.Tensor:
        if clips.dim() != 5 or clips.shape[-1] != 3:
            raise ValueError(f"expected uint8 clips (N, T, H, W, 3), got {tuple(clips.shape)}")
        groups = list(generator) if isinstance(generator, (list, tuple)) else [generator]
        n = clips.shape[0]
        if n % len(groups):
            raise ValueError(f"ColorAugment: {n} clips do not split into {len(groups)} equal groups")
        if clips.device.type == "cpu" and len(groups) > 1:
            # On CPU one group at a time is faster (its working set stays in cache: 0.21 s
            # against 0.27 s for 4 x 3 clips of 16x112x112) and gives the same numbers.
            per = n // len(groups)
            return torch.cat([self._apply(clips[i * per : (i + 1) * per], [g]) for i, g in enumerate(groups)])
        return self._apply(clips, groups)

    def _apply(self, clips: torch.Tensor, generators: list) -> torch.Tensor:
        """All clips in one pass: a fixed sequence of kernels, whatever the parameters."""
        n, t, h, w, _ = clips.shape
        m = n * t
        floats, longs, sizes = self._plan(n, t, generators)
        floats, longs = _to_device(floats, clips.device), _to_device(longs, clips.device)
        n_gray, hue_sizes = sizes[0], sizes[1:]
        weights = floats[: 12 * m].view(4, 3, m, 1, 1, 1)
        mean, inv_std = floats[12 * m : 12 * m + 6].view(2, 1, 3, 1, 1)
        hue_shifts = floats[12 * m + 6 :].split(hue_sizes)
        gray_rows, gray_channel, *hue_rows = longs.split([n_gray, n_gray, *hue_sizes])
        # Work on images (M, 3, H, W), in place where possible: on CPU, allocating a fresh
        # full-size temporary costs more than the arithmetic done with it.
        x = torch.empty((m, 3, h, w), dtype=torch.float32, device=clips.device)
        x.copy_(clips.reshape(m, h, w, 3).permute(0, 3, 1, 2)).div_(255)

        # "Grayscale" as the reference: one random RGB channel copied to all three.
        if n_gray:
            chosen = x.index_select(0, gray_rows).gather(1, gray_channel.view(-1, 1, 1, 1).expand(-1, 1, h, w))
            x.index_copy_(0, gray_rows, chosen.expand(-1, 3, -1, -1))

        # One fused in-place update serves brightness, contrast and saturation of every
        # image (weights 1, 0, 0 where the op at this position is another); hue is
        # computed for just the images whose op at this position is hue.
        for position in range(4):
            scale, w_mean, w_luma = weights[position]
            luma = _gray(x)  # (M, 1, H, W)
            reference = luma.mean(dim=(2, 3), keepdim=True).mul_(w_mean)
            reference = luma.mul_(w_luma).add_(reference)  # (M, 1, H, W)
            x.mul_(scale).add_(reference).clamp_(0, 1)
            if hue_sizes[position]:
                rows = hue_rows[position]
                x.index_copy_(0, rows, shift_hue(x.index_select(0, rows), hue_shifts[position]))

        x.sub_(mean).mul_(inv_std)
        return x.view(n, t, 3, h, w).permute(0, 2, 1, 3, 4).contiguous()  # (N, 3, T, H, W)

    def __repr__(self) -> str:
        b, c, s, h = self.strengths
        return (
            f"ColorAugment(per_frame_color={self.per_frame_color}, p_gray={self.p_gray}, brightness={b}, "
            f"contrast={c}, saturation={s}, hue={h}, p_jitter={self.p_jitter})"
        )
