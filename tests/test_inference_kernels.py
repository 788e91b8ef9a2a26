"""Small inference speed-ups checked for their values: tanh in place, window views without
as_strided, and convolutions in 2 MiB slices of samples."""

import numpy as np
import pytest

from modularcnn import Net, activations, gradcheck, reference_kernels
from modularcnn.kernels.conv import sliding_windows
from modularcnn.layers import BatchNormalization, Convolutional, Dense, Flatten


def test_tanh_in_place_keeps_the_values_and_the_gradients():
    """Tanh's derivative needs only its output: a layer with activation='tanh' overwrites its
    pre-activation, with the same outputs and a backward pass that still passes gradcheck."""
    z = np.random.default_rng(0).standard_normal((3, 4))
    expected = np.tanh(z)
    assert activations.Tanh().forward_inplace(z) is z
    np.testing.assert_array_equal(z, expected)
    layer = Dense(3, activation="tanh")
    assert max(gradcheck(layer, input_shape=(5,), batch_size=2).values()) < 1e-6
    assert layer.preactivation is None       # nothing kept beside the output


@pytest.mark.parametrize("contiguous", [True, False])
def test_sliding_windows_views_every_window_read_only(contiguous):
    """Over a contiguous array the view is made from its buffer (cheaper than as_strided), over a
    strided view by as_strided: both equal the windows cut out by a loop and cannot be written."""
    base = np.random.default_rng(0).standard_normal((2, 9, 14, 3))
    xp = base if contiguous else base[:, :, ::2]
    out_shape, kernel, stride, dilation = (3, 2), (2, 3), (3, 2), (1, 2)
    windows = sliding_windows(xp, kernel, stride, out_shape, dilation)
    assert windows.shape == (2, 3, 2, 2, 3, 3) and not windows.flags.writeable
    for i in range(3):
        for j in range(2):
            for a in range(2):
                for b in range(3):
                    np.testing.assert_array_equal(
                        windows[:, i, j, a, b], xp[:, i * 3 + a, j * 2 + b * 2])
    assert np.shares_memory(windows, base)


def test_a_batch_larger_than_one_slice_predicts_what_one_sample_at_a_time_does():
    """28x28x16 windows of a 3x3 convolution take 903 kB per sample in float64: a batch of 9 goes in
    slices of 2 under the 2 MiB bound; the outputs equal those of the samples one by one and the
    reference."""
    net = Net(input_shape=(28, 28, 16), dtype="float64", seed=0)
    net.add(Convolutional(5, 3, pad="same", activation="tanh"))
    net.add(BatchNormalization())
    net.add(Flatten())
    net.add(Dense(3))
    x = np.random.default_rng(1).standard_normal((9, 28, 28, 16))
    assert Convolutional.INFERENCE_WINDOW_BYTES // (28 * 28 * 9 * 16 * 8) == 2
    together = net.predict(x, batch_size=9)
    alone = np.concatenate([net.predict(x[k:k + 1]) for k in range(9)])
    np.testing.assert_allclose(together, alone, rtol=1e-12, atol=1e-12)
    with reference_kernels():
        np.testing.assert_allclose(net.predict(x, batch_size=9), together, rtol=1e-12, atol=1e-12)
