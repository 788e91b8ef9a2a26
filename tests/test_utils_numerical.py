"""``modularcnn.utils.to_categorical`` and ``normalize`` against hand-written expectations (Keras 3)."""

import numpy as np
import pytest

import modularcnn
from modularcnn.utils import normalize, to_categorical


def test_to_categorical_matches_keras():
    np.testing.assert_array_equal(to_categorical([2, 0, 1]), [[0, 0, 1], [1, 0, 0], [0, 1, 0]])
    out = to_categorical(np.array([[1], [3]]), num_classes=5)  # trailing axis of 1 is dropped
    assert out.shape == (2, 5) and out.dtype == np.float64
    np.testing.assert_array_equal(out, [[0, 1, 0, 0, 0], [0, 0, 0, 1, 0]])
    grid = to_categorical(np.array([[0, 1], [1, 1]], dtype=np.uint8), 2)
    assert grid.shape == (2, 2, 2) and grid[0, 0].tolist() == [1, 0]
    assert to_categorical(np.array([1.0, 0.0])).tolist() == [[0, 1], [1, 0]]
    assert modularcnn.utils.to_categorical is to_categorical


@pytest.mark.parametrize("x, num_classes, match", [
    ([0, 3], 3, r"\[0, 3\)"), ([-1, 0], None, r"\[0, 1\)"), ([0.5], None, "integer"),
    (["a"], None, "integer"), ([], None, "num_classes"), ([1], 0, "num_classes"),
])
def test_to_categorical_refuses_bad_ids(x, num_classes, match):
    with pytest.raises(ValueError, match=match):
        to_categorical(x, num_classes)


def test_normalize_matches_keras():
    x = np.array([[3.0, 4.0], [0.0, 0.0], [1.0, -1.0]])
    np.testing.assert_allclose(normalize(x), [[0.6, 0.8], [0, 0], [2 ** -0.5, -(2 ** -0.5)]])
    np.testing.assert_allclose(normalize(x, axis=0, order=1),
                               [[0.75, 0.8], [0, 0], [0.25, -0.2]])
    with pytest.raises(ValueError, match="axis"):
        normalize(x, axis=2)
