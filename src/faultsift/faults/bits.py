"""Bit-level faults in the real encoding of values, through integer views.

No Python strings, no NumPy round trip, no sync per fault: the tensor is viewed as
same-width integers on its own device and combined with integer masks (XOR flips, OR sets,
AND-NOT clears). Floating formats (fp32, fp16, bf16, fp64) use their IEEE encodings; int8 and
uint8 their two's complement / unsigned bytes; ``torch.ao`` quantized tensors (qint8, quint8)
their stored integers (:func:`storage` and :func:`rebuild`).

Example::

    flip_bits(torch.tensor([1.0]), torch.tensor([31]))                       # tensor([-1.])
    apply_masks(torch.tensor([1.0]), torch.tensor([1 << 23]), "set0")         # tensor([0.5000])
"""

from __future__ import annotations

import torch

from faultsift.errors import ConfigError

INT_VIEW = {
    torch.float32: torch.int32,
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
    torch.float64: torch.int64,
    torch.int8: torch.int8,
    torch.uint8: torch.uint8,
    torch.qint8: torch.int8,
    torch.quint8: torch.uint8,
}
DTYPE_NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.float64: "fp64",
               torch.int8: "int8", torch.uint8: "uint8", torch.qint8: "qint8", torch.quint8: "quint8"}
BIT_OPS = ("flip", "set0", "set1")


def dtype_from_name(name: str) -> torch.dtype:
    """The torch dtype of a format name (``fp16`` -> ``torch.float16``)."""
    for dtype, dtype_name in DTYPE_NAMES.items():
        if dtype_name == name:
            return dtype
    raise ConfigError(f"Expected a number format among {', '.join(DTYPE_NAMES.values())}, got {name}.")


def check_dtype(dtype: torch.dtype) -> torch.dtype:
    if dtype not in INT_VIEW:
        raise ConfigError(f"Expected a number format among {', '.join(DTYPE_NAMES.values())} for bit faults, got {dtype}.")
    return dtype


def bit_width(dtype: torch.dtype) -> int:
    """Number of bits in the encoding of ``dtype``."""
    return torch.iinfo(INT_VIEW[check_dtype(dtype)]).bits


def check_bits(bits: torch.Tensor, dtype: torch.dtype) -> None:
    """Raise a one-line error if any bit index is outside the encoding of ``dtype``."""
    width = bit_width(dtype)
    if bits.numel() and (int(bits.min()) < 0 or int(bits.max()) >= width):
        bad = int(bits.max()) if int(bits.max()) >= width else int(bits.min())
        raise ConfigError(f"Expected `bit` in [0, {width - 1}] for {DTYPE_NAMES[dtype]}, got {bad}.")


def storage(values: torch.Tensor) -> torch.Tensor:
    """The stored integers of a quantized tensor (``int_repr``); other tensors unchanged."""
    return values.int_repr() if values.is_quantized else values


def rebuild(ints: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A quantized tensor with the quantization parameters of ``like`` and stored integers ``ints``.

    Dequantising ``ints`` and quantising again with the same parameters gives back ``ints``
    exactly (the error of ``(q - z) * s`` is far below half a step).
    """
    if like.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        real = (ints.double() - like.q_zero_point()) * like.q_scale()
        return torch.quantize_per_tensor(real.float(), like.q_scale(), like.q_zero_point(), like.dtype)
    axis = like.q_per_channel_axis()
    shape = [-1 if d == axis else 1 for d in range(ints.dim())]
    scales, zeros = like.q_per_channel_scales(), like.q_per_channel_zero_points()
    real = (ints.double() - zeros.reshape(shape)) * scales.reshape(shape)
    return torch.quantize_per_channel(real.float(), scales, zeros, axis, like.dtype)


def bit_masks(bits: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Integer masks in the view dtype of ``dtype``: bit ``bits[..., j]`` set for every j (OR over the last dim)."""
    int_dtype = INT_VIEW[check_dtype(dtype)]
    bits = torch.as_tensor(bits).to(int_dtype)
    masks = torch.bitwise_left_shift(torch.ones_like(bits), bits)
    out = masks[..., 0]
    for j in range(1, masks.shape[-1]):
        out = torch.bitwise_or(out, masks[..., j])
    return out


def apply_masks(values: torch.Tensor, masks: torch.Tensor, op: str) -> torch.Tensor:
    """A copy of ``values`` with ``masks`` applied per element: ``flip`` (XOR), ``set1`` (OR), ``set0`` (AND NOT).

    ``masks`` are integers (any integer dtype; cast with wrap-around to the view width, so
    int64 ``1 << 15`` is the fp16 sign bit) broadcasting against ``values``.
    """
    int_dtype = INT_VIEW[check_dtype(values.dtype)]
    masks = torch.as_tensor(masks, device=values.device).to(int_dtype)
    ints = values.contiguous().view(int_dtype)
    if op == "flip":
        out = torch.bitwise_xor(ints, masks)
    elif op == "set1":
        out = torch.bitwise_or(ints, masks)
    elif op == "set0":
        out = torch.bitwise_and(ints, torch.bitwise_not(masks))
    else:
        raise ConfigError(f"Expected a bit operation among {', '.join(BIT_OPS)}, got {op}.")
    return out.view(values.dtype)


def flip_bits(values: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """A copy of ``values`` with bit ``bits[i]`` of element ``i`` flipped (broadcasting)."""
    return apply_masks(values, bit_masks(torch.as_tensor(bits).unsqueeze(-1), values.dtype), "flip")
