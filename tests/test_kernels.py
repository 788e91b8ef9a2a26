"""The vectorised kernels against the naive loops in tests/naive.py."""

import numpy as np
import pytest

from modularcnn.kernels.conv import col2im, conv_backward, conv_forward, conv_input_gradient, im2col
from modularcnn.kernels.pooling import (
    avg_pool_backward,
    avg_pool_forward,
    max_pool_backward,
    max_pool_forward,
)
from modularcnn.kernels.windows import output_spatial_shape
from modularcnn.kernels.workspace import Workspace

from . import naive

CASES = [
    # x shape, kernel (kh, kw), stride, pads
    ((2, 7, 5, 3), (3, 3), (1, 1), ((1, 1), (1, 1))),
    ((1, 9, 6, 2), (3, 2), (2, 2), ((0, 0), (0, 0))),
    ((3, 8, 11, 1), (5, 3), (3, 2), ((2, 1), (0, 2))),
    ((2, 6, 6, 4), (1, 1), (2, 2), ((0, 0), (0, 0))),
]


@pytest.mark.parametrize("x_shape, kernel_size, stride, pads", CASES)
def test_conv_forward_matches_loops(x_shape, kernel_size, stride, pads):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape)
    kernel = rng.standard_normal(kernel_size + (x_shape[-1], 4))
    bias = rng.standard_normal(4)
    out_shape = output_spatial_shape(x_shape[1:3], kernel_size, stride, pads)
    y, _ = conv_forward(x, kernel, bias, stride, pads, out_shape)
    np.testing.assert_allclose(y, naive.conv2d(x, kernel, bias, stride, pads), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("x_shape, kernel_size, stride, pads", CASES)
def test_col2im_is_the_adjoint_of_im2col(x_shape, kernel_size, stride, pads):
    # <im2col(x), c> == <x, col2im(c)> for all x, c: the defining property of the backward pass.
    rng = np.random.default_rng(1)
    out_shape = output_spatial_shape(x_shape[1:3], kernel_size, stride, pads)
    x = rng.standard_normal(x_shape)
    cols = im2col(x, kernel_size, stride, pads, out_shape)
    c = rng.standard_normal(cols.shape)
    back = col2im(c, x_shape, kernel_size, stride, pads, out_shape)
    assert np.isclose(np.sum(cols * c), np.sum(x * back), rtol=1e-12)


@pytest.mark.parametrize("x_shape, kernel_size, stride, pads", CASES)
@pytest.mark.parametrize("dilation", [None, (2, 1)])
def test_conv_input_gradient_equals_col2im_of_the_product(x_shape, kernel_size, stride, pads,
                                                          dilation):
    # The offset-by-offset input gradient (its own path for one input channel: (3, 8, 11, 1)) is
    # col2im(dy2 @ kernel^T), the textbook formula.
    rng = np.random.default_rng(3)
    reach = [(k - 1) * d + 1 for k, d in zip(kernel_size, dilation or (1, 1))]
    out_shape = output_spatial_shape(x_shape[1:3], reach, stride, pads)
    kernel = rng.standard_normal(kernel_size + (x_shape[-1], 5))
    dy2 = rng.standard_normal((x_shape[0] * int(np.prod(out_shape)), 5))
    expected = col2im(dy2 @ kernel.reshape(-1, 5).T, x_shape, kernel_size, stride, pads, out_shape,
                      dilation)
    got = conv_input_gradient(dy2, kernel, x_shape, stride, pads, out_shape, dilation)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_conv_backward_skips_input_gradient_when_not_needed():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 5, 5, 1))
    kernel = rng.standard_normal((3, 3, 1, 2))
    pads = ((1, 1), (1, 1))
    y, cols = conv_forward(x, kernel, None, (1, 1), pads, (5, 5))
    dx, dkernel, dbias = conv_backward(np.ones_like(y), cols, kernel, x.shape, (1, 1), pads,
                                       need_input_grad=False)
    assert dx is None and dkernel.shape == kernel.shape and dbias.shape == (2,)


POOL_CASES = [
    ((2, 6, 8, 3), (2, 2), (2, 2), ((0, 0), (0, 0))),     # the 2x2 fast path
    ((2, 7, 9, 3), (2, 2), (2, 2), ((0, 0), (0, 0))),     # odd sizes: the general path, last row dropped
    ((1, 7, 9, 2), (3, 3), (2, 2), ((0, 0), (0, 0))),     # overlapping
    ((2, 5, 7, 1), (3, 2), (1, 2), ((1, 1), (0, 1))),     # padded, non-square
]


@pytest.mark.parametrize("x_shape, pool, stride, pads", POOL_CASES)
def test_max_pool_matches_loops(x_shape, pool, stride, pads):
    x = np.random.default_rng(3).standard_normal(x_shape)
    out_shape = output_spatial_shape(x_shape[1:3], pool, stride, pads)
    y, _ = max_pool_forward(x, pool, stride, pads, out_shape)
    np.testing.assert_array_equal(y, naive.pool2d(x, pool, stride, pads, "max"))


@pytest.mark.parametrize("x_shape, pool, stride, pads", POOL_CASES)
def test_avg_pool_matches_loops(x_shape, pool, stride, pads):
    x = np.random.default_rng(4).standard_normal(x_shape)
    out_shape = output_spatial_shape(x_shape[1:3], pool, stride, pads)
    y, _ = avg_pool_forward(x, pool, stride, pads, out_shape)
    np.testing.assert_allclose(y, naive.pool2d(x, pool, stride, pads, "avg"), rtol=1e-12)


def test_max_pool_ties_go_to_the_first_cell_only():
    x = np.ones((1, 2, 2, 1))
    y, argmax = max_pool_forward(x, (2, 2), (2, 2), ((0, 0), (0, 0)), (1, 1))
    dx = max_pool_backward(np.ones_like(y), argmax, x.shape, (2, 2), (2, 2), ((0, 0), (0, 0)))
    np.testing.assert_array_equal(dx[0, :, :, 0], [[1, 0], [0, 0]])


@pytest.mark.parametrize("height", [2, 3])     # the 2x2 path, and the general one (odd height)
def test_max_pool_partial_ties_go_to_the_first_cell_in_row_major_order(height):
    x = np.zeros((1, height, 2, 1))
    x[0, :2, :, 0] = [[1, 2], [2, 0]]            # top-right and bottom-left tie for the maximum
    pads = ((0, 0), (0, 0))
    y, route = max_pool_forward(x, (2, 2), (2, 2), pads, (1, 1))
    dx = max_pool_backward(np.ones_like(y), route, x.shape, (2, 2), (2, 2), pads)
    np.testing.assert_array_equal(dx[0, :2, :, 0], [[0, 1], [0, 0]])


def test_pool_backward_preserves_float32():
    x = np.random.default_rng(5).standard_normal((2, 4, 4, 3)).astype(np.float32)
    pads = ((0, 0), (0, 0))
    y, argmax = max_pool_forward(x, (2, 2), (2, 2), pads, (2, 2))
    assert y.dtype == np.float32
    assert max_pool_backward(y, argmax, x.shape, (2, 2), (2, 2), pads).dtype == np.float32
    y, counts = avg_pool_forward(x, (2, 2), (2, 2), pads, (2, 2))
    assert y.dtype == np.float32
    assert avg_pool_backward(y, counts, x.shape, (2, 2), (2, 2), pads).dtype == np.float32


def test_workspace_scratch_arrays_are_carved_from_one_growing_buffer():
    workspace = Workspace()
    big = workspace.get("cols", (4, 6), np.float32)
    small = workspace.get("cols", (2, 3), np.float32)     # a smaller batch: the same memory
    assert small.shape == (2, 3) and small.flags.c_contiguous and np.shares_memory(big, small)
    bigger = workspace.get("cols", (5, 6), np.float32)    # grows: new memory, the old view intact
    assert not np.shares_memory(big, bigger)
    assert not np.shares_memory(workspace.get("cols", (2, 3), np.float64), bigger)  # per dtype


def test_workspace_filled_arrays_keep_their_shape_and_fill():
    workspace = Workspace()
    padded = workspace.get("padded", (2, 3), np.float32, fill=0)
    padded[1] = 7
    assert workspace.get("padded", (2, 3), np.float32, fill=0) is padded   # kept as it was left
    other = workspace.get("padded", (3, 2), np.float32, fill=0)
    assert other.shape == (3, 2) and not other.any()
