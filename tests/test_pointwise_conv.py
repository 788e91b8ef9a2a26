"""A 1x1 convolution at stride 1 without a border runs as a plain matrix product (no window copy):
the same results as a naive loop, an exact backward, every rank."""

import numpy as np
import pytest

from modularcnn import gradcheck
from modularcnn.kernels.conv import conv_backward, conv_forward, conv_input_gradient, im2col
from modularcnn.layers import Conv1D, Conv3D, Convolutional

from . import naive


@pytest.mark.parametrize("x_shape, dilation", [
    ((2, 5, 3, 7), (1, 1)), ((1, 4, 6, 1), (2, 3)), ((3, 9, 5), (1,)), ((1, 3, 2, 4, 5), (1, 1, 1))])
def test_a_pointwise_convolution_matches_a_naive_loop_and_copies_no_window(x_shape, dilation):
    rng = np.random.default_rng(0)
    rank = len(x_shape) - 2
    x = rng.standard_normal(x_shape)
    kernel = rng.standard_normal((1,) * rank + (x_shape[-1], 3))
    bias = rng.standard_normal(3)
    pads, stride = ((0, 0),) * rank, (1,) * rank
    cols = im2col(x, (1,) * rank, stride, pads, x_shape[1:-1], dilation=dilation)
    assert np.shares_memory(cols, x)                 # the input is the matrix
    y, cols = conv_forward(x, kernel, bias, stride, pads, x_shape[1:-1], dilation=dilation)
    np.testing.assert_allclose(y, naive.conv_nd(x, kernel, bias, stride, pads, dilation),
                               rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    dx, dkernel, dbias = conv_backward(dy, cols, kernel, x_shape, stride, pads, dilation=dilation)
    # Against the definition: y = x @ K + b, so dx = dy @ Kᵀ, dK = xᵀ dy, db = Σ dy.
    x2, dy2, k2 = x.reshape(-1, x_shape[-1]), dy.reshape(-1, 3), kernel.reshape(-1, 3)
    np.testing.assert_allclose(dx, (dy2 @ k2.T).reshape(x_shape), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dkernel, (x2.T @ dy2).reshape(kernel.shape), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dbias, dy2.sum(axis=0), rtol=1e-12, atol=1e-12)


def test_a_padded_or_strided_1x1_convolution_still_copies_its_windows():
    x = np.random.default_rng(1).standard_normal((2, 5, 4, 3))
    for stride, pads, out in [((2, 1), ((0, 0), (0, 0)), (3, 4)), ((1, 1), ((1, 0), (0, 0)), (6, 4))]:
        assert not np.shares_memory(im2col(x, (1, 1), stride, pads, out), x)
        kernel = np.random.default_rng(2).standard_normal((1, 1, 3, 2))
        dy = np.random.default_rng(3).standard_normal((2, *out, 2))
        expected = naive.conv_nd(x, kernel, None, stride, pads, (1, 1))
        np.testing.assert_allclose(conv_forward(x, kernel, None, stride, pads, out)[0], expected,
                                   rtol=1e-12, atol=1e-12)
        assert conv_input_gradient(dy.reshape(-1, 2), kernel, x.shape, stride, pads, out).shape == x.shape


@pytest.mark.parametrize("layer, input_shape, batch", [
    (Convolutional(3, 1, activation="tanh"), (5, 3, 7), 1),
    (Convolutional(4, 1, dilation_rate=2), (4, 6, 1), 2),
    (Conv1D(3, 1, activation="elu"), (7, 5), 1),
    (Conv3D(2, 1), (3, 2, 4, 3), 2)])
def test_pointwise_layers_pass_the_gradient_check(layer, input_shape, batch):
    assert max(gradcheck(layer, input_shape=input_shape, batch_size=batch).values()) < 1e-6
