import numpy as np
import pytest
import torch

from faultsift.errors import ConfigError
from faultsift.faults.bits import apply_masks, bit_masks, bit_width, check_bits, dtype_from_name, flip_bits, rebuild, storage

SPECIAL = [0.0, -0.0, 1.0, -2.5, 1e-40, 3.4e38, float("inf"), float("-inf"), 6.1e-5]


@pytest.mark.parametrize("bit", range(32))
def test_fp32_every_bit_matches_numpy_bit_view(bit):
    rng = np.random.default_rng(bit)
    values = np.concatenate([rng.normal(0, 10, 200), SPECIAL]).astype(np.float32)
    expected = (values.view(np.uint32) ^ np.uint32(1 << bit)).view(np.float32)
    got = flip_bits(torch.from_numpy(values.copy()), torch.tensor(bit)).numpy()
    assert np.array_equal(got.view(np.uint32), expected.view(np.uint32))


@pytest.mark.parametrize(
    "dtype,np_float,np_uint",
    [(torch.float16, np.float16, np.uint16), (torch.float64, np.float64, np.uint64)],
)
def test_other_widths_match_numpy(dtype, np_float, np_uint):
    width = bit_width(dtype)
    values = np.random.default_rng(0).normal(0, 3, width).astype(np_float)
    bits = np.arange(width)
    expected = (values.view(np_uint) ^ (np.ones(width, np_uint) << bits.astype(np_uint))).view(np_float)
    got = flip_bits(torch.from_numpy(values.copy()), torch.from_numpy(bits)).numpy()
    assert np.array_equal(got.view(np_uint), expected.view(np_uint))


def test_bf16_flip_equals_fp32_flip_of_upper_half():
    values = torch.tensor([1.0, -3.5, 0.15625], dtype=torch.bfloat16)
    for bit in range(16):
        got = flip_bits(values, torch.tensor(bit)).float().numpy().view(np.uint32)
        want = (values.float().numpy().view(np.uint32) ^ np.uint32(1 << (bit + 16)))
        assert np.array_equal(got, want)


def test_flip_twice_is_identity_and_input_untouched():
    values = torch.randn(100, generator=torch.Generator().manual_seed(0))
    before = values.clone()
    bits = torch.randint(0, 32, (100,), generator=torch.Generator().manual_seed(1))
    assert torch.equal(flip_bits(flip_bits(values, bits), bits).view(torch.int32), before.view(torch.int32))
    assert torch.equal(values, before)


def test_bad_bit_index_has_one_line_message():
    with pytest.raises(ConfigError, match=r"Expected `bit` in \[0, 15\] for fp16, got 23\."):
        check_bits(torch.tensor([3, 23]), torch.float16)
    with pytest.raises(ConfigError, match="number format among fp32.*got torch.int64"):
        flip_bits(torch.tensor([1, 2]), torch.tensor(0))


NP_TYPES = {torch.float32: (np.float32, np.uint32), torch.float16: (np.float16, np.uint16),
            torch.float64: (np.float64, np.uint64), torch.int8: (np.int8, np.uint8), torch.uint8: (np.uint8, np.uint8)}


def _numpy_values(dtype, n, seed):
    rng = np.random.default_rng(seed)
    np_type, _ = NP_TYPES[dtype]
    if np.issubdtype(np_type, np.integer):
        info = np.iinfo(np_type)
        return rng.integers(info.min, info.max + 1, size=n).astype(np_type)
    return rng.normal(0, 5, n).astype(np_type)


@pytest.mark.parametrize("dtype", list(NP_TYPES))
@pytest.mark.parametrize("op", ["flip", "set0", "set1"])
def test_masks_match_numpy_bit_operations(dtype, op):
    """Multi-bit masks with XOR / OR / AND-NOT equal the same operations on NumPy unsigned views."""
    np_type, np_uint = NP_TYPES[dtype]
    width = bit_width(dtype)
    values = _numpy_values(dtype, 64, width)
    rng = np.random.default_rng(1)
    bits = np.stack([rng.choice(width, size=3, replace=False) for _ in range(64)])
    masks = bit_masks(torch.from_numpy(bits), dtype)
    np_masks = np.zeros(64, np_uint)
    for j in range(3):
        np_masks |= np.left_shift(np.ones(64, np_uint), bits[:, j].astype(np_uint))
    u = values.view(np_uint)
    expected = {"flip": u ^ np_masks, "set1": u | np_masks, "set0": u & ~np_masks}[op]
    got = apply_masks(torch.from_numpy(values.copy()), masks, op).numpy()
    assert got.dtype == np_type and np.array_equal(got.view(np_uint), expected)


def test_int64_masks_wrap_to_the_top_bit_of_narrow_formats():
    """A mask of 1 << 15 given as int64 is the fp16 sign bit; 1 << 7 the int8 sign bit."""
    assert apply_masks(torch.tensor([1.5], dtype=torch.float16), torch.tensor([1 << 15]), "flip").item() == -1.5
    assert apply_masks(torch.tensor([5], dtype=torch.int8), torch.tensor([1 << 7]), "flip").item() == 5 - 128
    assert apply_masks(torch.tensor([5], dtype=torch.uint8), torch.tensor([1 << 7]), "flip").item() == 133


@pytest.mark.parametrize("per_channel", [False, True])
def test_quantized_rebuild_keeps_stored_integers_and_parameters(per_channel):
    real = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    if per_channel:
        q = torch.quantize_per_channel(real, torch.rand(6, dtype=torch.float64) / 10 + 0.01,
                                       torch.zeros(6, dtype=torch.long), 0, torch.qint8)
    else:
        q = torch.quantize_per_tensor(real, 0.02, 3, torch.quint8)
    ints = storage(q).clone()
    ints.view(-1)[7] ^= 1 << 6
    back = rebuild(ints, q)
    assert torch.equal(back.int_repr(), ints) and back.dtype == q.dtype and back.qscheme() == q.qscheme()
    expected = (ints.double() - (q.q_per_channel_zero_points()[:, None] if per_channel else q.q_zero_point())) * (
        q.q_per_channel_scales()[:, None] if per_channel else q.q_scale())
    assert np.allclose(back.dequantize().numpy(), expected.numpy(), rtol=1e-6)
    assert bit_width(torch.qint8) == 8 and dtype_from_name("qint8") == torch.qint8
