"""``domain-incremental``: the same classes at every step, under a new domain each time.

The training samples of every class are split into ``n_domains`` equal parts (a seeded draw per
class); step k trains on part k under domain k, and is tested on the whole test set under domain
k. Evaluation after step k covers every domain seen (a[k][j] is the accuracy on domain j's test
set), over all classes, with no domain label. Domains (option ``domain``), applied to the stored
inputs (uint8 images stay uint8), domain 1 being the data as they are:

- ``rotation``: domain k is rotated by (k - 1) x ``angle`` degrees (bilinear, zero fill);
- ``permutation``: domain k > 1 permutes the pixels by a fixed permutation drawn from the seed
  (the same for every channel and sample);
- ``contrast``: domain k scales each image's deviations from its mean by 1 - (k - 1) x
  ``contrast_step``.

Inputs that are not images (a flat vector) are seen as images when the stream says their
shape (split-digits: 1 x 8 x 8); rotation and contrast need that.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from benchmark.core.errors import UsageError
from benchmark.core.options import Option
from benchmark.data.base import StreamData
from benchmark.scenarios.pool import pooled, shuffled_members, take
from benchmark.scenarios.registry import ScenarioSpec, register_scenario

DOMAINS = ("rotation", "permutation", "contrast")
PART_DRAW, PERMUTATION_DRAW = 3, 4


def as_images(x: torch.Tensor, shape) -> torch.Tensor:
    """Stored inputs viewed as (N, C, H, W)."""
    return x.reshape(len(x), *shape)


def rounded_like(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Float ``values`` in the dtype of ``like`` (rounded and clipped to its range when
    integer)."""
    if like.dtype.is_floating_point:
        return values.to(like.dtype)
    info = torch.iinfo(like.dtype)
    return values.round().clamp(info.min, info.max).to(like.dtype)


def rotate(x: torch.Tensor, shape, degrees: float) -> torch.Tensor:
    """Each image rotated by ``degrees`` counter-clockwise about its centre."""
    if degrees == 0:
        return x.clone()
    from torchvision.transforms.functional import InterpolationMode
    from torchvision.transforms.functional import rotate as tv_rotate

    images = as_images(x, shape).float()
    out = tv_rotate(images, degrees, interpolation=InterpolationMode.BILINEAR)
    return rounded_like(out, x).reshape(x.shape)


def permute(x: torch.Tensor, shape, permutation: torch.Tensor) -> torch.Tensor:
    """Each image's pixels reordered by ``permutation`` (one index per pixel position)."""
    images = as_images(x, shape)
    flat = images.reshape(len(x), shape[0], -1)[:, :, permutation.to(x.device)]
    return flat.reshape(x.shape).contiguous()


def contrast(x: torch.Tensor, shape, factor: float) -> torch.Tensor:
    """Each image's deviations from its own mean scaled by ``factor``."""
    images = as_images(x, shape).float()
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return rounded_like(mean + factor * (images - mean), x).reshape(x.shape)


def domain_transform(options: dict, shape, seed: int, k: int):
    """The function mapping stored inputs into domain ``k`` (0-based)."""
    kind = options["domain"]
    if kind == "rotation":
        return lambda x: rotate(x, shape, k * options["angle"])
    if kind == "contrast":
        return lambda x: contrast(x, shape, 1.0 - k * options["contrast_step"])
    if k == 0:
        return lambda x: x.clone()
    pixels = int(np.prod(shape[1:]))
    order = np.random.default_rng([int(seed), k, PERMUTATION_DRAW]).permutation(pixels)
    return lambda x: permute(x, shape, torch.as_tensor(order, dtype=torch.int64))


def check(options: dict, facts) -> None:
    if options["domain"] != "permutation" and facts.image_shape is None:
        raise UsageError(f"domain {options['domain']!r} needs image inputs; this stream's "
                         f"inputs of shape {tuple(facts.input_shape)} are not images: use "
                         "domain = \"permutation\"")
    last = 1.0 - (options["n_domains"] - 1) * options["contrast_step"]
    if options["domain"] == "contrast" and last <= 0:
        raise UsageError(f"contrast_step {options['contrast_step']} leaves no contrast by domain "
                         f"{options['n_domains']}; choose contrast_step < "
                         f"{1 / (options['n_domains'] - 1):.3g}")


def apply(data: StreamData, seed: int, options: dict) -> StreamData:
    x_tr, y_tr, x_te, y_te = pooled(data)
    shape = data.picture_shape or (1, *data.input_shape)
    classes = sorted({int(c) for c in y_tr.unique()})
    n = options["n_domains"]
    parts = [[] for _ in range(n)]
    for c in classes:
        for k, chunk in enumerate(np.array_split(shuffled_members(y_tr, c, seed, PART_DRAW), n)):
            parts[k].append(chunk)
    train, test = [], []
    for k in range(n):
        move = domain_transform(options, shape, seed, k)
        x, y = take(x_tr, y_tr, np.concatenate(parts[k]))
        train.append((move(x), y))
        test.append((move(x_te), y_te.clone()))
    return dataclasses.replace(data, classes_per_step=[classes] * n, train=train, test=test)


register_scenario(ScenarioSpec(
    name="domain-incremental",
    summary="the same classes at every step under a new domain (rotation, permutation or "
            "contrast)",
    apply=apply,
    check=check,
    receives="step k's data: a share of every class's training samples under domain k",
    evaluated="every domain seen so far, all classes, no domain label",
    options=(
        Option("domain", str, "rotation", "how a step's domain differs", choices=DOMAINS),
        Option("n_domains", int, 5, "steps (domains)", low=2),
        Option("angle", float, 15.0, "rotation: degrees added per domain"),
        Option("contrast_step", float, 0.2, "contrast: contrast lost per domain", low=0.0,
               high=1.0),
    ),
))
