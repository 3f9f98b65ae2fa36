"""Built-in digits data: a fixed stratified split and a harder evaluation pool.

Models trained on clean 8x8 digits are far more confident than real benchmark models, so the
study selects from ``digits-hard``: every test image in four deterministic variants (pixel
noise, an occluding block, a one-pixel shift), whose margin spread resembles a real benchmark.

Example::

    x, y = digits_split("test")      # x: float32 [540, 1, 8, 8] in [-1, 1], y: int64 [540]
    hx, hy = hard_pool()             # [2160, 1, 8, 8]
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

SPLIT_SEED = 0
TEST_FRACTION = 0.3
POOL_SEED = 2025
POOL_VARIANTS = 4
NOISE_STD = (0.05, 0.25)  # per variant, uniform in this range, in units of the [0, 1] pixel scale
OCCLUSION_PROB = 0.25
OCCLUSION_SIZE = 3


@lru_cache(maxsize=None)
def _split() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)  # [0, 1]
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=TEST_FRACTION, stratify=digits.target, random_state=SPLIT_SEED
    )
    return {"train": (x_train, y_train), "test": (x_test, y_test)}


def _to_tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32) * 2.0 - 1.0).unsqueeze(1)
    return x, torch.from_numpy(labels.astype(np.int64))


def digits_split(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Clean ``train`` or ``test`` split, normalised to [-1, 1], shape [N, 1, 8, 8]."""
    images, labels = _split()[split]
    return _to_tensors(images, labels)


def corrupt_images(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One deterministic hard variant per image: shift, optional occlusion, then noise."""
    out = np.empty_like(images)
    for i, img in enumerate(images):
        dy, dx = rng.integers(-1, 2, size=2)
        shifted = np.roll(img, (int(dy), int(dx)), axis=(0, 1))
        if rng.random() < OCCLUSION_PROB:
            r, c = rng.integers(0, 8 - OCCLUSION_SIZE + 1, size=2)
            shifted[r : r + OCCLUSION_SIZE, c : c + OCCLUSION_SIZE] = 0.0
        std = rng.uniform(*NOISE_STD)
        out[i] = np.clip(shifted + rng.normal(0.0, std, size=img.shape), 0.0, 1.0)
    return out


@lru_cache(maxsize=None)
def _hard_pool() -> tuple[np.ndarray, np.ndarray]:
    images, labels = _split()["test"]
    rng = np.random.default_rng(POOL_SEED)
    variants = [corrupt_images(images, rng) for _ in range(POOL_VARIANTS)]
    return np.concatenate(variants), np.tile(labels, POOL_VARIANTS)


def hard_pool() -> tuple[torch.Tensor, torch.Tensor]:
    """The harder evaluation pool: ``POOL_VARIANTS`` corrupted copies of the test split."""
    return _to_tensors(*_hard_pool())
