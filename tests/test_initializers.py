"""Initialisers: statistics against their formulas, seeding, names, custom callables."""

import math

import numpy as np
import pytest

from modularcnn import Net, initializers
from modularcnn.layers import Dense


@pytest.mark.parametrize("name, expected_std", [
    ("he_normal", math.sqrt(2 / 200)),
    ("he_uniform", math.sqrt(2 / 200)),
    ("glorot_normal", math.sqrt(2 / (200 + 300))),
    ("glorot_uniform", math.sqrt(2 / (200 + 300))),
    ("lecun_normal", math.sqrt(1 / 200)),
    ("lecun_uniform", math.sqrt(1 / 200)),
])
def test_variance_scaling_standard_deviations(name, expected_std):
    values = initializers.get(name)((200, 300), np.random.default_rng(0), np.float32)
    assert values.dtype == np.float32 and values.shape == (200, 300)
    assert abs(values.std() / expected_std - 1) < 0.02
    assert abs(values.mean()) < 0.05 * expected_std


def test_conv_fans_count_the_receptive_field():
    assert initializers.compute_fans((5, 5, 6, 16)) == (150, 400)
    assert initializers.compute_fans((120, 84)) == (120, 84)


def test_truncated_normal_stays_within_two_deviations():
    values = initializers.get("he_normal")((400, 50), np.random.default_rng(1), np.float64)
    stddev = math.sqrt(2 / 400) / initializers.VarianceScaling.TRUNCATION_CORRECTION
    assert np.abs(values).max() <= 2 * stddev


def test_uniform_limits_and_constants():
    values = initializers.get("glorot_uniform")((10, 30), np.random.default_rng(2), np.float32)
    assert np.abs(values).max() <= math.sqrt(6 / 40)
    assert np.all(initializers.Constant(0.5)((3,), None) == 0.5)
    assert np.all(initializers.get("ones")((2, 2), None) == 1)
    assert np.abs(initializers.RandomUniform(0.01)((100,), np.random.default_rng(0))).max() <= 0.01
    assert abs(initializers.RandomNormal(0.5)((20000,), np.random.default_rng(0)).std() - 0.5) < 0.01


def test_custom_callable_and_bad_return_shape():
    def halves(shape, rng, dtype):
        return np.full(shape, 0.5, dtype=dtype)

    net = Net(input_shape=(3,))
    layer = net.add(Dense(2, kernel_initializer=halves))
    np.testing.assert_array_equal(layer.params["kernel"], np.full((3, 2), 0.5, np.float32))

    with pytest.raises(ValueError, match=r"returned shape \(2,\).*expected \(3, 2\)"):
        Net(input_shape=(3,)).add(Dense(2, kernel_initializer=lambda shape, rng, dtype: np.zeros(2)))


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="valid names: .*glorot_uniform"):
        initializers.get("kaiming")
    with pytest.raises(ValueError):
        initializers.get(3)


@pytest.mark.parametrize("name", initializers.names())
def test_serialize_round_trip(name):
    init = initializers.get(name)
    again = initializers.deserialize(initializers.serialize(init))
    assert type(again) is type(init) and again.get_config() == init.get_config()


# -- drawn in pieces (issue 14 item 3) --------------------------------------------------------------

def _one_shot_truncated(shape, stddev, rng, dtype):
    """The one-shot algorithm the pieces must reproduce: the whole float64 array, then redraws."""
    values = rng.standard_normal(size=shape)
    outside = (values > 2) | (values < -2)
    while np.any(outside):
        values[outside] = rng.standard_normal(size=int(outside.sum()))
        outside = (values > 2) | (values < -2)
    return (values * stddev).astype(dtype)


def _one_shot(initializer, shape, rng, dtype):
    """What every random initialiser drew before it drew in pieces (one float64 call, then a cast)."""
    if isinstance(initializer, initializers.RandomNormal):
        return rng.normal(initializer.mean, initializer.stddev, size=shape).astype(dtype)
    if isinstance(initializer, initializers.RandomUniform):
        return rng.uniform(-initializer.limit, initializer.limit, size=shape).astype(dtype)
    fan_in, fan_out = initializers.compute_fans(shape)
    n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[initializer.mode]
    variance = initializer.scale / max(1.0, n)
    if initializer.distribution == "uniform":
        limit = math.sqrt(3.0 * variance)
        return rng.uniform(-limit, limit, size=shape).astype(dtype)
    return _one_shot_truncated(shape, math.sqrt(variance) / initializer.TRUNCATION_CORRECTION, rng,
                               dtype)


RANDOM_NAMES = [name for name in initializers.names() if name not in ("zeros", "ones", "constant")]


@pytest.mark.parametrize("piece", [7, 1000, 1 << 20], ids=lambda p: f"piece{p}")
@pytest.mark.parametrize("name", RANDOM_NAMES)
def test_pieces_give_the_one_shot_values_bit_for_bit(name, piece, monkeypatch):
    monkeypatch.setattr(initializers, "DRAW_PIECE", piece, raising=False)
    shapes = [(3, 3, 5, 7), (0, 4), (), (1, 1)] + ([(30011,)] if piece < 100_000 else [(1100, 2000)])
    for shape in shapes:
        for dtype in (np.float32, np.float64):
            init = initializers.get(name)
            rng, reference_rng = np.random.default_rng(9), np.random.default_rng(9)
            got = init(shape, rng, dtype)
            expected = _one_shot(init, shape, reference_rng, dtype)
            assert got.dtype == dtype and got.shape == expected.shape
            assert got.tobytes() == expected.tobytes(), (name, shape, dtype)
            # the generator is left where the one-shot draw left it: the next layer's weights too
            assert rng.standard_normal() == reference_rng.standard_normal()


@pytest.mark.parametrize("name", ["glorot_uniform", "he_normal", "random_normal"])
def test_a_float32_layer_is_drawn_in_its_own_size_plus_one_piece(name):
    import tracemalloc  # NumPy reports its array allocations to tracemalloc
    shape = (3000, 2001)  # 23 MiB of float32; the one-shot float64 draw peaked at 69-74 MiB
    target = math.prod(shape) * 4
    init = initializers.get(name)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        weights = init(shape, np.random.default_rng(0), np.float32)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert weights.dtype == np.float32
    # one float64 piece and the truncated normal's booleans over it (measured: 8 MiB over the
    # weights for the uniform and normal draws, 17.5 MiB for he_normal), the redraw indices (~4.6%
    # of the values, 8 bytes each, and their concatenation) and a little slack
    bound = target + 2 * 8 * getattr(initializers, "DRAW_PIECE", 1 << 20) + 0.1 * 8 * math.prod(shape) \
        + (1 << 20)
    assert peak <= bound, f"{name}: peak {peak / 2**20:.1f} MiB for {target / 2**20:.1f} MiB weights"
