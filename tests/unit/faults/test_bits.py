import numpy as np
import pytest
import torch

from faultsift.errors import ConfigError
from faultsift.faults.bits import bit_width, check_bits, flip_bits

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
