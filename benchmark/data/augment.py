"""Training-time augmentation of a whole mini-batch on its device.

An augmentation is a callable ``augment(x_batch, generator) -> x_batch`` (``StreamData.augment``;
``TensorLoader`` and the expert ``fit`` loop apply it to each training batch, never to test
data). The random draws (crop offsets, flips) come from the CPU ``torch.Generator`` passed in,
so the result depends only on the generator's state and the batch, on any device; the crop and
flip themselves run on the batch's device as one gather.

Standard settings: CIFAR-10/100 and Tiny-ImageNet use a random crop of the original size after
padding 4 pixels on each side, plus a horizontal flip with probability 1/2. The padding is
*black* in the original pixel scale, i.e. ``-mean / std`` per channel on normalised inputs (what
torchvision's ``RandomCrop(padding=4)`` before ``Normalize`` gives). MNIST streams use none.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4,
                     fill: Sequence[float] = (0.0,), flip: bool = True) -> torch.Tensor:
    """Each image of ``x`` (N, C, H, W) cropped to H x W at a random offset in its ``padding``-
    padded version (padding value ``fill``, one per channel or one for all), then mirrored
    left-right with probability 1/2 if ``flip``.

    Draws, in this order, N offset pairs in 0..2*padding and (if ``flip``) N uniforms from
    ``generator``.
    """
    n, c, h, w = x.shape
    offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=generator)
    if flip:
        flipped = torch.rand(n, generator=generator) < 0.5
    else:
        flipped = torch.zeros(n, dtype=torch.bool)
    if n == 0:
        return x
    hp, wp = h + 2 * padding, w + 2 * padding
    fill_t = torch.as_tensor(fill, dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1)
    padded = fill_t.expand(n, c, hp, wp).clone()
    padded[:, :, padding:padding + h, padding:padding + w] = x
    ar_h, ar_w = torch.arange(h), torch.arange(w)
    rows = offsets[:, :1] + ar_h                                      # (N, H)
    cols = offsets[:, 1:] + torch.where(flipped[:, None], w - 1 - ar_w, ar_w)  # (N, W)
    index = (rows[:, :, None] * wp + cols[:, None, :]).reshape(n, 1, h * w)
    index = index.to(x.device).expand(n, c, h * w)
    return padded.reshape(n, c, hp * wp).gather(2, index).reshape(n, c, h, w)


@dataclass(frozen=True)
class CropFlip:
    """``random_crop_flip`` with fixed settings, usable as ``StreamData.augment``."""

    padding: int = 4
    fill: tuple[float, ...] = (0.0,)
    flip: bool = True

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return random_crop_flip(x, generator, self.padding, self.fill, self.flip)


def black_fill(mean: Sequence[float], std: Sequence[float]) -> tuple[float, ...]:
    """The normalised value of a black pixel per channel: -mean / std."""
    return tuple(-m / s for m, s in zip(mean, std))


def standard_crop_flip(mean: Sequence[float], std: Sequence[float], padding: int = 4) -> CropFlip:
    """The CIFAR / Tiny-ImageNet training augmentation for inputs normalised by mean/std."""
    return CropFlip(padding=padding, fill=black_fill(mean, std), flip=True)
