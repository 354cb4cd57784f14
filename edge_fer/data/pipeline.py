"""tf.data input pipeline and batch augmentation.

Augmentation runs on whole batches inside tf.data (never inside the model, so exported
models carry no augmentation layers): one random affine transform per image — horizontal
flip, small rotation, shift and zoom, applied in a single resampling — then random erasing;
optionally distillation targets from a teacher model and mixup.
Images stay raw 0–255 float32; each model normalises inside its own graph.

Every random draw is a stateless op keyed by a per-batch seed from one seeded stream, so a
pipeline made with the same ``seed`` yields the same batches in the same order on every run,
with the maps still running in parallel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._tf import tf as _tf


@dataclass(frozen=True)
class Augment:
    flip: bool = True
    rotation_deg: float = 10.0
    shift: float = 0.1  # fraction of the side
    zoom: float = 0.1  # scale in [1 - zoom, 1 + zoom]
    erase_prob: float = 0.5
    erase_area: tuple[float, float] = (0.02, 0.15)


def _seeds(seed, n: int):
    """``n`` independent stateless seeds from one (shape [2]); a random one when ``seed`` is None."""
    tf = _tf()
    if seed is None:
        seed = tf.random.uniform([2], 0, 2**31 - 1, dtype=tf.int64)
    return tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=n))


def augment_batch(images, aug: Augment, seed=None):
    """Augment a float32 batch (B, H, W, C) with per-image random parameters drawn from ``seed``
    (a shape-[2] integer tensor: the same seed, the same augmentation)."""
    tf = _tf()
    s = _seeds(seed, 12)
    shape = tf.shape(images)
    b, h, w = shape[0], shape[1], shape[2]
    hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)

    def uniform(i, lo=0.0, hi=1.0, shape=None):
        return tf.random.stateless_uniform([b] if shape is None else shape, seed=s[i], minval=lo, maxval=hi)

    angle = uniform(0, -1.0, 1.0) * (aug.rotation_deg * math.pi / 180.0)
    scale = 1.0 + uniform(1, -aug.zoom, aug.zoom)
    tx = uniform(2, -aug.shift, aug.shift) * wf
    ty = uniform(3, -aug.shift, aug.shift) * hf
    flip = tf.where(uniform(4) < 0.5, -1.0, 1.0) if aug.flip else tf.ones([b])
    # Output pixel p maps to input pixel M (p - c) + c + t, with M = rotation / scale · flip.
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    a0, a1 = cos * flip, -sin
    b0, b1 = sin * flip, cos
    cx, cy = (wf - 1.0) / 2.0, (hf - 1.0) / 2.0
    a2 = cx - a0 * cx - a1 * cy + tx
    b2 = cy - b0 * cx - b1 * cy + ty
    zeros = tf.zeros([b])
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    images = tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.stack([h, w]),
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    )

    if aug.erase_prob > 0:
        area = uniform(5, aug.erase_area[0], aug.erase_area[1]) * hf * wf
        log_ratio = uniform(6, math.log(0.3), math.log(3.3))
        eh = tf.minimum(tf.sqrt(area * tf.exp(log_ratio)), hf)
        ew = tf.minimum(tf.sqrt(area / tf.exp(log_ratio)), wf)
        y0 = uniform(7) * (hf - eh)
        x0 = uniform(8) * (wf - ew)
        ys = tf.range(hf)[None, :, None]
        xs = tf.range(wf)[None, None, :]
        inside = (
            (ys >= y0[:, None, None]) & (ys < (y0 + eh)[:, None, None])
            & (xs >= x0[:, None, None]) & (xs < (x0 + ew)[:, None, None])
        )
        apply = uniform(9) < aug.erase_prob
        mask = inside & apply[:, None, None]
        noise = uniform(10, 0.0, 255.0, shape=tf.shape(images))
        images = tf.where(mask[..., None], noise, images)
    return images


def mixup_batch(images, targets, alpha: float, seed=None):
    """mixup (Zhang et al., 2018): each image and its target blended with another of the batch, weight
    λ ~ Beta(α, α) per image, λ ≥ 0.5 so the image keeps its own identity. ``seed`` as in
    :func:`augment_batch`."""
    tf = _tf()
    s = _seeds(seed, 3)
    b = tf.shape(images)[0]
    g1 = tf.random.stateless_gamma([b], seed=s[0], alpha=alpha)
    g2 = tf.random.stateless_gamma([b], seed=s[1], alpha=alpha)
    lam = g1 / (g1 + g2 + 1e-12)
    lam = tf.maximum(lam, 1.0 - lam)
    perm = tf.random.experimental.stateless_shuffle(tf.range(b), seed=s[2])
    li = lam[:, None, None, None]
    lt = tf.cast(lam[:, None], targets.dtype)
    return (li * images + (1.0 - li) * tf.gather(images, perm),
            lt * targets + (1.0 - lt) * tf.gather(targets, perm))


def teacher_targets(teacher_logits, weight: float, temperature: float):
    """A map function: targets ← (1 − w) · targets + w · softmax(teacher logits / T) on the same
    (augmented) images — knowledge distillation through soft targets (Hinton et al., 2015)."""

    tf = _tf()

    def fn(images, targets):
        soft = tf.nn.softmax(tf.cast(teacher_logits(images, training=False), tf.float32) / temperature)
        return images, (1.0 - weight) * targets + weight * soft

    return fn


def make_dataset(
    x: np.ndarray,
    targets: np.ndarray,
    *,
    batch_size: int,
    training: bool,
    augment: Augment | None = None,
    seed: int = 0,
    channels: int = 1,
    mixup: float = 0.0,
    teacher=None,
    first_epoch: int | None = None,
):
    """A tf.data pipeline of (float32 images (B,H,W,C) in 0–255, float32 targets (B,7)).

    Training batches: augmentation, then ``teacher`` (a map function from :func:`teacher_targets`)
    on the augmented images, then mixup with Beta(``mixup``, ``mixup``) when ``mixup`` > 0.
    ``seed`` fixes the shuffle order and every random draw, epoch after epoch.

    ``first_epoch`` (training only): one endless stream of epochs starting at that (0-based) epoch,
    for ``fit(steps_per_epoch=ceil(len(x) / batch_size))``. Epoch e's order and draws do not
    depend on where the stream started, so a resumed training sees what an uninterrupted one does.
    """
    tf = _tf()
    ds = tf.data.Dataset.from_tensor_slices((x, targets))
    if training:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=False)

    def to_float(images, y):
        images = tf.cast(images, tf.float32)[..., None]
        if channels != 1:
            images = tf.repeat(images, channels, axis=-1)
        return images, y

    if not training:
        return ds.map(to_float, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    # One key per batch, from a stream that is new each epoch and the same on every run; the
    # augmentation and mixup draw from two seeds split off it.
    keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2, drop_remainder=True)
    ds = tf.data.Dataset.zip(ds, keys)
    if first_epoch is not None:  # skip whole epochs before any image is touched: cheap
        ds = ds.repeat().skip(first_epoch * math.ceil(len(x) / batch_size))
    ds = ds.map(lambda batch, key: (*to_float(*batch), tf.random.experimental.stateless_split(key, num=2)),
                num_parallel_calls=tf.data.AUTOTUNE)
    if augment is not None:
        ds = ds.map(lambda im, y, key: (augment_batch(im, augment, seed=key[0]), y, key),
                    num_parallel_calls=tf.data.AUTOTUNE)
    if teacher is not None:  # one call at a time: the teacher uses the intra-op threads itself
        ds = ds.map(lambda im, y, key: (*teacher(im, y), key))
    if mixup > 0:
        ds = ds.map(lambda im, y, key: mixup_batch(im, y, mixup, seed=key[1]), num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(lambda im, y, key: (im, y))
    return ds.prefetch(tf.data.AUTOTUNE)


def as_model_input(x: np.ndarray, channels: int = 1) -> np.ndarray:
    """uint8 (N,48,48) faces → float32 (N,48,48,C) raw pixels, as every edge_fer model takes them."""
    out = x.astype(np.float32)[..., None]
    return np.repeat(out, channels, axis=-1) if channels != 1 else out
