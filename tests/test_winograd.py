"""Winograd's F(2×2, 3×3) kernels against the direct convolution and its im2col gradients."""

import numpy as np
import pytest

from modularcnn.kernels import winograd
from modularcnn.kernels.conv import conv_backward, conv_forward
from modularcnn.kernels.workspace import Workspace

from . import naive

# padded input (N, 2·th + 2, 2·tw + 2, C) and filters: non-square, batch of 1, one channel
CASES = [((2, 8, 6, 3), 4), ((1, 4, 10, 2), 5), ((3, 6, 6, 1), 2), ((1, 4, 4, 5), 1)]


def tiles_of(padded_shape):
    return (padded_shape[1] - 2) // 2, (padded_shape[2] - 2) // 2


NO_PADS = ((0, 0), (0, 0))


def split(xp):
    n, h, w, c = xp.shape
    return winograd.split_columns(xp, NO_PADS, np.empty((n, h, 2, w // 2, c), xp.dtype))


def winograd_conv(xp, kernel, workspace=None):
    """The convolution of the padded ``xp`` as ``(N, Ho, Wo, F)``, through the transforms."""
    th, tw = tiles_of(xp.shape)
    transformed = winograd.input_transform(split(xp), (th, tw), workspace=workspace)
    blocks = winograd.output_transform(transformed @ winograd.kernel_transform(kernel), workspace)
    filters = kernel.shape[-1]
    return (blocks.reshape(2, 2, len(xp), th, tw, filters).transpose(2, 3, 0, 4, 1, 5)
            .reshape(len(xp), 2 * th, 2 * tw, filters))


def to_blocks(dy):
    """``dy`` (N, Ho, Wo, F) as the four output planes ``(4, T, F)``."""
    n, ho, wo, f = dy.shape
    return dy.reshape(n, ho // 2, 2, wo // 2, 2, f).transpose(2, 4, 0, 1, 3, 5).reshape(4, -1, f)


@pytest.mark.parametrize("padded_shape, filters", CASES)
def test_forward_matches_the_direct_convolution(padded_shape, filters):
    rng = np.random.default_rng(0)
    xp = rng.standard_normal(padded_shape)
    kernel = rng.standard_normal((3, 3, padded_shape[-1], filters))
    expected = naive.conv2d(xp, kernel, None, (1, 1), ((0, 0), (0, 0)))
    np.testing.assert_allclose(winograd_conv(xp, kernel), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("padded_shape, filters", CASES)
def test_gradients_match_the_im2col_backward(padded_shape, filters):
    rng = np.random.default_rng(1)
    xp = rng.standard_normal(padded_shape)
    kernel = rng.standard_normal((3, 3, padded_shape[-1], filters))
    th, tw = tiles_of(padded_shape)
    dy = rng.standard_normal((padded_shape[0], 2 * th, 2 * tw, filters))
    no_pad = ((0, 0), (0, 0))
    _, cols = conv_forward(xp, kernel, None, (1, 1), no_pad, dy.shape[1:3])
    dx_expected, dkernel_expected, _ = conv_backward(dy, cols, kernel, xp.shape, (1, 1), no_pad)

    transformed = winograd.input_transform(split(xp), (th, tw))
    d_products = winograd.output_transform_adjoint(to_blocks(dy))
    dkernel = winograd.kernel_transform_adjoint(transformed.transpose(0, 2, 1) @ d_products)
    d_transformed = d_products @ winograd.kernel_transform(kernel).transpose(0, 2, 1)
    d_split = winograd.input_transform_adjoint(d_transformed, split(xp).shape, (th, tw))
    dx = winograd.merge_columns(d_split, NO_PADS, np.empty_like(xp))
    np.testing.assert_allclose(dkernel, dkernel_expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, dx_expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("transform, adjoint, shape", [
    (lambda a: winograd.input_transform(a, (2, 3)),
     lambda b: winograd.input_transform_adjoint(b, (2, 6, 2, 4, 3), (2, 3)), (2, 6, 2, 4, 3)),
    (lambda a: winograd.split_columns(a, ((1, 2), (1, 0)), np.zeros((2, 6, 2, 3, 3))),
     lambda b: winograd.merge_columns(b, ((1, 2), (1, 0)), np.empty((2, 3, 5, 3))), (2, 3, 5, 3)),
    (lambda a: winograd.split_columns(a, ((0, 0), (2, 1)), np.zeros((1, 3, 2, 4, 2))),
     lambda b: winograd.merge_columns(b, ((0, 0), (2, 1)), np.empty((1, 3, 5, 2))), (1, 3, 5, 2)),
    (winograd.output_transform, winograd.output_transform_adjoint, (16, 5, 4)),
    (winograd.kernel_transform, winograd.kernel_transform_adjoint, (3, 3, 2, 4)),
])
def test_each_backward_transform_is_the_adjoint_of_its_forward(transform, adjoint, shape):
    # <T(a), b> == <a, T*(b)> for all a, b: what makes the backward pass the exact gradient.
    rng = np.random.default_rng(2)
    a = rng.standard_normal(shape)
    forward = transform(a)
    b = rng.standard_normal(forward.shape)
    assert np.isclose(np.sum(forward * b), np.sum(a * adjoint(b)), rtol=1e-12)


def test_split_columns_puts_even_and_odd_padded_columns_apart():
    x = np.arange(1, 6, dtype=np.float64).reshape(1, 1, 5, 1)              # columns 1..5
    xs = winograd.split_columns(x, ((1, 0), (1, 0)), np.zeros((1, 2, 2, 3, 1)))
    # padded row 1 is [0, 1, 2, 3, 4, 5]: even columns 0, 2, 4 and odd columns 1, 3, 5
    np.testing.assert_array_equal(xs[0, 1, :, :, 0], [[0, 2, 4], [1, 3, 5]])
    assert not xs[0, 0].any()
    np.testing.assert_array_equal(winograd.merge_columns(xs, ((1, 0), (1, 0)), np.empty_like(x)), x)


def test_float32_stays_float32_and_is_close_to_the_direct_result():
    rng = np.random.default_rng(3)
    xp = rng.standard_normal((2, 10, 8, 16)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, 16, 8)).astype(np.float32)
    y = winograd_conv(xp, kernel, Workspace())
    assert y.dtype == np.float32 and winograd.kernel_transform(kernel).dtype == np.float32
    expected = naive.conv2d(xp.astype(np.float64), kernel.astype(np.float64), None, (1, 1),
                            ((0, 0), (0, 0)))
    # float32 rounding only: the transforms use the constants 1 and 1/2, which are exact.
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-4 * np.abs(expected).max())


def test_results_go_into_the_given_arrays():
    xs = split(np.ones((2, 6, 6, 2), dtype=np.float32))
    out = np.full((16, 8, 2), np.nan, dtype=np.float32)
    assert winograd.input_transform(xs, (2, 2), out, Workspace()) is out
    assert np.all(out[0] == 0) and np.all(out[5] == 4)  # a tile of ones: corner 0, centre 4
    d_input = np.full(xs.shape, np.nan, dtype=np.float32)
    assert winograd.input_transform_adjoint(out, d_input.shape, (2, 2), d_input) is d_input
    assert np.isfinite(d_input).all()                     # every element written, none left over
