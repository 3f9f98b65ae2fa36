"""Patterns: which elements of a site's per-input tensor one fault touches.

Every pattern works on any shape the same way: it picks a box (a start and a length per
dimension) or a set of flat indices, so ``[N, C]`` token maps, ``[C, H, W]`` feature maps,
folded ``[windows, N, C]`` outputs and ``[out, in]`` weights need no per-rank code. Rows
run along the last dimension, columns along the one before it; shapes of rank 1 are seen as
``[1, n]``.

| spec | elements |
| --- | --- |
| ``single`` | one element |
| ``row`` | a whole line along the last dimension |
| ``column`` | a whole line along the second-to-last dimension |
| ``block:S`` | an S x S square in the last two dimensions (clipped to the shape) |
| ``random-k:K`` | K distinct elements anywhere |
| ``fraction:P`` | round(P x numel) distinct elements (at least one) |
| ``channel[:D]`` | every element with one index along dimension D (default -3: C of [C, H, W]) |

Example::

    parse_pattern("block:2").indices((3, 4, 4), np.random.default_rng(0))   # 4 flat indices
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from faultsift.errors import ConfigError
from faultsift.registry import Registry


class Pattern(ABC):
    """Chooses flat element indices (sorted, distinct) in a tensor of a given shape."""

    spec: str = ""

    @abstractmethod
    def indices(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        """Sorted int64 flat indices into a C-ordered tensor of ``shape``."""

    def check(self, shape: tuple[int, ...], where: str) -> None:
        """Raise a one-line error if the pattern cannot apply to ``shape``."""


PATTERNS: Registry[type[Pattern]] = Registry("pattern")


def _as_2d(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (1,) * max(0, 2 - len(shape)) + tuple(shape)


def box_indices(shape: tuple[int, ...], starts: list[int], lengths: list[int]) -> np.ndarray:
    """Flat indices of the box ``starts[d] .. starts[d] + lengths[d] - 1`` in every dimension d."""
    ranges = np.ix_(*[np.arange(s, s + n) for s, n in zip(starts, lengths)])
    return np.ravel_multi_index(ranges, shape).ravel().astype(np.int64)


class BoxPattern(Pattern):
    """A box: full length in some dims, ``size`` in some, one index in the others."""

    pad_to_2d = True

    def lengths(self, shape: tuple[int, ...]) -> list[int]:
        raise NotImplementedError

    def indices(self, shape, rng):
        shape = _as_2d(shape) if self.pad_to_2d else tuple(shape)
        lengths = self.lengths(shape)
        starts = [int(rng.integers(n - k + 1)) for n, k in zip(shape, lengths)]
        return box_indices(shape, starts, lengths)


@PATTERNS.register("single")
@dataclass(frozen=True)
class Single(Pattern):
    spec = "single"

    def indices(self, shape, rng):
        return rng.integers(int(np.prod(shape)), size=1).astype(np.int64)


@PATTERNS.register("row")
@dataclass(frozen=True)
class Row(BoxPattern):
    spec = "row"

    def lengths(self, shape):
        return [1] * (len(shape) - 1) + [shape[-1]]


@PATTERNS.register("column")
@dataclass(frozen=True)
class Column(BoxPattern):
    spec = "column"

    def lengths(self, shape):
        return [1] * (len(shape) - 2) + [shape[-2], 1]


@PATTERNS.register("block")
@dataclass(frozen=True)
class Block(BoxPattern):
    size: int = 2

    def __post_init__(self):
        if self.size < 1:
            raise ConfigError(f"Expected block size >= 1, got {self.size}.")

    @property
    def spec(self):
        return f"block:{self.size}"

    def lengths(self, shape):
        return [1] * (len(shape) - 2) + [min(self.size, shape[-2]), min(self.size, shape[-1])]


@PATTERNS.register("channel")
@dataclass(frozen=True)
class Channel(BoxPattern):
    dim: int = -3

    @property
    def spec(self):
        return f"channel:{self.dim}"

    def check(self, shape, where):
        if not -len(shape) <= self.dim < len(shape):
            raise ConfigError(f"Expected pattern `channel` dim in [{-len(shape)}, {len(shape) - 1}] for shape "
                              f"{tuple(shape)} at {where}, got {self.dim}; give it as `channel:D`.")

    pad_to_2d = False

    def lengths(self, shape):
        lengths = list(shape)
        lengths[self.dim] = 1
        return lengths


@PATTERNS.register("random-k")
@dataclass(frozen=True)
class RandomK(Pattern):
    k: int = 2

    def __post_init__(self):
        if self.k < 1:
            raise ConfigError(f"Expected `random-k` k >= 1, got {self.k}.")

    @property
    def spec(self):
        return f"random-k:{self.k}"

    def check(self, shape, where):
        if self.k > int(np.prod(shape)):
            raise ConfigError(f"Expected `random-k` k <= {int(np.prod(shape))} (elements of {where}), got {self.k}.")

    def indices(self, shape, rng):
        return np.sort(rng.choice(int(np.prod(shape)), size=self.k, replace=False)).astype(np.int64)


@PATTERNS.register("fraction")
@dataclass(frozen=True)
class Fraction(Pattern):
    fraction: float = 0.01

    def __post_init__(self):
        if not 0 < self.fraction <= 1:
            raise ConfigError(f"Expected `fraction` in (0, 1], got {self.fraction}.")

    @property
    def spec(self):
        return f"fraction:{self.fraction}"

    def indices(self, shape, rng):
        numel = int(np.prod(shape))
        count = max(1, int(round(self.fraction * numel)))
        return np.sort(rng.choice(numel, size=count, replace=False)).astype(np.int64)


_ARG_TYPES = {"block": int, "channel": int, "random-k": int, "fraction": float}


def parse_pattern(spec: str) -> Pattern:
    """A pattern from its spec string: ``single``, ``row``, ``column``, ``block:S``, ``random-k:K``,
    ``fraction:P``, ``channel[:D]``."""
    name, sep, arg = spec.partition(":")
    cls = PATTERNS.get(name)
    if not sep:
        if name in ("random-k", "fraction", "block"):
            raise ConfigError(f"Expected pattern `{name}` with a value, e.g. `{name}:{ {'random-k': 8, 'fraction': 0.01, 'block': 4}[name]}`, got `{spec}`.")
        return cls()
    if name not in _ARG_TYPES:
        raise ConfigError(f"Expected pattern `{name}` without a value, got `{spec}`.")
    try:
        value = _ARG_TYPES[name](arg)
    except ValueError:
        raise ConfigError(f"Expected {'an integer' if _ARG_TYPES[name] is int else 'a number'} after `{name}:`, got `{arg}`.") from None
    return cls(value)
