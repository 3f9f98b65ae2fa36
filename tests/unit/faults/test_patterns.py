import numpy as np
import pytest

from faultsift.errors import ConfigError, UnknownNameError
from faultsift.faults.patterns import PATTERNS, parse_pattern

SHAPES = [(17, 32), (16, 8, 8), (4, 16, 24), (2, 3, 5, 7), (10,)]


def _coords(shape, flat):
    return np.stack(np.unravel_index(flat, shape), axis=1)


@pytest.mark.parametrize("shape", SHAPES)
def test_box_patterns_pick_the_documented_elements(shape):
    """Checked on coordinates: rows vary only the last dim over its whole length, and so on."""
    rng = np.random.default_rng(0)
    full = (1,) * (2 - len(shape)) + shape if len(shape) < 2 else shape
    for _ in range(20):
        row = _coords(full, parse_pattern("row").indices(shape, rng))
        assert len(row) == full[-1] and (row[:, :-1] == row[0, :-1]).all() and sorted(row[:, -1]) == list(range(full[-1]))
        col = _coords(full, parse_pattern("column").indices(shape, rng))
        keep = [d for d in range(len(full)) if d != len(full) - 2]
        assert len(col) == full[-2] and (col[:, keep] == col[0, keep]).all()
        block = _coords(full, parse_pattern("block:3").indices(shape, rng))
        side = [min(3, full[-2]), min(3, full[-1])]
        assert len(block) == side[0] * side[1] and (block[:, :-2] == block[0, :-2]).all()
        assert (np.ptp(block[:, -2]) + 1, np.ptp(block[:, -1]) + 1) == tuple(side)


def test_channel_is_one_index_along_its_dim_and_everything_else():
    rng = np.random.default_rng(0)
    idx = parse_pattern("channel").indices((16, 8, 8), rng)
    coords = _coords((16, 8, 8), idx)
    assert len(idx) == 64 and len(set(coords[:, 0])) == 1
    tokens = parse_pattern("channel:-1").indices((17, 32), rng)  # one feature across all tokens
    assert len(tokens) == 17 and len(set(_coords((17, 32), tokens)[:, 1])) == 1
    with pytest.raises(ConfigError, match=r"Expected pattern `channel` dim in \[-2, 1\] for shape \(17, 32\)"):
        parse_pattern("channel").check((17, 32), "blocks.0.attn:output")


def test_random_patterns_are_distinct_sorted_and_seeded():
    a = parse_pattern("random-k:50").indices((17, 32), np.random.default_rng(3))
    b = parse_pattern("random-k:50").indices((17, 32), np.random.default_rng(3))
    assert np.array_equal(a, b) and len(np.unique(a)) == 50 and (np.diff(a) > 0).all()
    frac = parse_pattern("fraction:0.1").indices((17, 32), np.random.default_rng(0))
    assert len(frac) == round(0.1 * 544) and len(np.unique(frac)) == len(frac)
    assert len(parse_pattern("fraction:0.0001").indices((17, 32), np.random.default_rng(0))) == 1
    single = parse_pattern("single").indices((17, 32), np.random.default_rng(5))
    assert single.tolist() == np.random.default_rng(5).integers(544, size=1).tolist()


def test_every_registered_pattern_stays_in_bounds():
    rng = np.random.default_rng(1)
    for name in PATTERNS.names():
        spec = {"block": "block:4", "random-k": "random-k:5", "fraction": "fraction:0.2", "channel": "channel:0"}.get(name, name)
        for shape in SHAPES:
            idx = parse_pattern(spec).indices(shape, rng)
            assert idx.dtype == np.int64 and idx.min() >= 0 and idx.max() < np.prod(shape)
            assert len(np.unique(idx)) == len(idx)


def test_bad_pattern_specs():
    with pytest.raises(UnknownNameError, match="Did you mean `row`"):
        parse_pattern("rows")
    with pytest.raises(ConfigError, match=r"Expected `fraction` in \(0, 1\], got -0.5"):
        parse_pattern("fraction:-0.5")
    with pytest.raises(ConfigError, match="Expected pattern `random-k` with a value, e.g. `random-k:8`"):
        parse_pattern("random-k")
    with pytest.raises(ConfigError, match="Expected an integer after `block:`, got `x`"):
        parse_pattern("block:x")
    with pytest.raises(ConfigError, match="without a value"):
        parse_pattern("row:3")
    with pytest.raises(ConfigError, match=r"Expected `random-k` k <= 6"):
        parse_pattern("random-k:7").check((2, 3), "m:output")
