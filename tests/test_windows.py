"""Window arithmetic: output sizes and padding, checked directly against hand-computed values."""

import pytest

from modularcnn.kernels.windows import (
    output_length,
    output_spatial_shape,
    resolve_padding,
    same_padding,
)
from modularcnn.validation import normalize_padding, normalize_tuple


@pytest.mark.parametrize("size, kernel, stride, before, after, expected", [
    (28, 5, 1, 2, 2, 28),   # LeNet conv1, pad 2
    (14, 5, 1, 0, 0, 10),   # LeNet conv2, valid
    (28, 2, 2, 0, 0, 14),   # 2x2 pool
    (7, 3, 2, 0, 0, 3),     # overlapping pool 3/2
    (8, 3, 3, 1, 1, 3),     # stride 3 with padding: (8 + 2 - 3) // 3 + 1
    (5, 5, 1, 0, 0, 1),     # kernel exactly the input
])
def test_output_length(size, kernel, stride, before, after, expected):
    assert output_length(size, kernel, stride, before, after) == expected


@pytest.mark.parametrize("size, kernel, stride, expected", [
    (28, 3, 1, (1, 1)),
    (28, 4, 1, (1, 2)),     # odd total: the extra row goes after, as TensorFlow does
    (7, 3, 2, (1, 1)),      # out ceil(7/2)=4: total (4-1)*2+3-7=2
    (8, 3, 2, (0, 1)),      # out 4: total 1
    (5, 1, 2, (0, 0)),
    (6, 2, 2, (0, 0)),
])
def test_same_padding_matches_keras(size, kernel, stride, expected):
    assert same_padding(size, kernel, stride) == expected
    before, after = expected
    assert output_length(size, kernel, stride, before, after) == -(-size // stride)


def test_resolve_padding_modes():
    assert resolve_padding("valid", (9, 7), (3, 3), (1, 1)) == ((0, 0), (0, 0))
    assert resolve_padding("same", (9, 7), (3, 4), (2, 1)) == ((1, 1), (1, 2))
    assert resolve_padding(normalize_padding(2, 2), (9, 7), (3, 3), (1, 1)) == ((2, 2), (2, 2))
    assert normalize_padding((1, (0, 2)), 2) == ((1, 1), (0, 2))


def test_window_too_large_raises_with_sizes():
    with pytest.raises(ValueError, match=r"axis 0 has 3 \+ 2 padding = 5 < 7"):
        output_spatial_shape((3, 10), (7, 3), (1, 1), ((1, 1), (0, 0)))


@pytest.mark.parametrize("bad", [0, -1, (1, 2, 3), "3", 2.5, (2, 0), True])
def test_normalize_tuple_rejects(bad):
    with pytest.raises(ValueError):
        normalize_tuple(bad, 2, "filter_size")


@pytest.mark.parametrize("bad", ["full", -1, (1,), 1.5])
def test_normalize_padding_rejects(bad):
    with pytest.raises(ValueError):
        normalize_padding(bad, 2)
