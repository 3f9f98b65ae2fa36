"""Bit flips in the real encoding of floating-point values, through integer views.

No Python strings, no NumPy round trip: the tensor is viewed as same-width integers on its
own device and XOR-ed with a mask.

Example::

    flip_bits(torch.tensor([1.0]), torch.tensor([31]))   # tensor([-1.])
"""

from __future__ import annotations

import torch

from faultsift.errors import ConfigError

INT_VIEW = {
    torch.float32: torch.int32,
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
    torch.float64: torch.int64,
}
DTYPE_NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.float64: "fp64"}


def bit_width(dtype: torch.dtype) -> int:
    """Number of bits in the encoding of ``dtype``."""
    return torch.finfo(check_dtype(dtype)).bits


def check_dtype(dtype: torch.dtype) -> torch.dtype:
    if dtype not in INT_VIEW:
        names = ", ".join(DTYPE_NAMES.values())
        raise ConfigError(f"Expected a floating dtype among {names} for bit flips, got {dtype}.")
    return dtype


def check_bits(bits: torch.Tensor, dtype: torch.dtype) -> None:
    """Raise a one-line error if any bit index is outside the encoding of ``dtype``."""
    width = bit_width(dtype)
    if bits.numel() and (int(bits.min()) < 0 or int(bits.max()) >= width):
        bad = int(bits.max()) if int(bits.max()) >= width else int(bits.min())
        raise ConfigError(f"Expected `bit` in [0, {width - 1}] for {DTYPE_NAMES[dtype]}, got {bad}.")


def flip_bits(values: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """A copy of ``values`` with bit ``bits[i]`` of element ``i`` flipped (broadcasting)."""
    int_dtype = INT_VIEW[check_dtype(values.dtype)]
    bits = torch.as_tensor(bits, device=values.device).to(int_dtype)
    mask = torch.bitwise_left_shift(torch.ones_like(bits), bits)
    return torch.bitwise_xor(values.contiguous().view(int_dtype), mask).view(values.dtype)
