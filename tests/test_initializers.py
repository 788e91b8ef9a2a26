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
