"""Small inference speed-ups checked for their values: tanh in place, window views without
as_strided, convolutions in 2 MiB slices of samples, and predict in slices of rows."""

import numpy as np
import pytest

from modularcnn import Net, activations, gradcheck, reference_kernels
from modularcnn.callbacks import Callback
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


# -- predict a slice of rows at a time (execution.inference_rows) -------------------------------------

def _residual_net(dtype="float64"):
    """Conv - BN - ReLU, a residual block, a max pool and a dense layer, on odd 9x7x3 inputs."""
    from modularcnn.layers import Activation, MaxPooling, Residual

    net = Net(input_shape=(9, 7, 3), dtype=dtype, seed=0)
    net.add(Convolutional(4, 3, pad="same"))
    net.add(BatchNormalization())
    net.add(Activation("relu"))
    net.add(Residual([Convolutional(4, 3, pad="same"), BatchNormalization(), Activation("relu"),
                      Convolutional(4, 3, pad="same")]))
    net.add(MaxPooling(pool_size=2, stride=2))
    net.add(Flatten())
    net.add(Dense(5, activation="softmax"))
    net.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return net


def test_predict_goes_in_equal_slices_and_gives_the_whole_batch_outputs(monkeypatch):
    from modularcnn import execution

    net = _residual_net()
    x = np.random.default_rng(2).standard_normal((23, 9, 7, 3))
    net.fit(x, np.arange(23) % 5, epochs=1, batch_size=8, verbose=0, workers=1)  # moving statistics
    whole = net.forward(x, training=False).copy()
    # The widest array per sample is a 9x7x4 convolution output: 252 float64 values, 2,016 bytes.
    monkeypatch.setattr(execution, "INFERENCE_SLICE_BYTES", 2016 * 5)
    assert execution.inference_rows(net, 23) == 5          # 5 slices: 5, 5, 5, 5, 3
    assert execution.inference_rows(net, 11) == 4          # at most 5 a slice: 3 slices of 4, 4, 3
    assert execution.inference_rows(net, 5) == 5 and execution.inference_rows(net, 1) == 1
    seen = []
    original = net.forward
    monkeypatch.setattr(net, "forward", lambda batch, training=False: (
        seen.append(len(batch)), original(batch, training=training))[1])
    batch_outputs = []

    class Outputs(Callback):
        def on_predict_batch_end(self, batch, logs=None):
            batch_outputs.append(logs["outputs"].shape)

    sliced = net.predict(x, batch_size=23, callbacks=[Outputs()])
    assert seen == [5, 5, 5, 5, 3]
    assert batch_outputs == [(23, 5)]                      # the hooks see the caller's batch
    np.testing.assert_allclose(sliced, whole, rtol=1e-12, atol=1e-12)
    with reference_kernels():
        np.testing.assert_allclose(net.predict(x, batch_size=23), whole, rtol=1e-12, atol=1e-12)


def test_a_custom_layer_gets_the_whole_batch(monkeypatch):
    """A layer of the user's might mix the samples of a batch in inference: no slicing then."""
    from modularcnn import execution
    from modularcnn.layers import Layer

    class BatchCentre(Layer):
        def compute_output_shape(self, input_shape):
            return input_shape

        def forward(self, x, training=False):
            return x - x.mean(axis=0)

    net = Net(input_shape=(6,), dtype="float64", seed=0)
    net.add(Dense(4))
    net.add(BatchCentre())
    monkeypatch.setattr(execution, "INFERENCE_SLICE_BYTES", 8)
    x = np.random.default_rng(3).standard_normal((10, 6))
    assert execution.inference_rows(net, 10) == 10
    np.testing.assert_allclose(net.predict(x, batch_size=10).mean(axis=0), 0, atol=1e-12)


def test_predict_holds_a_slice_not_the_batch():
    """What the layers keep after a forward pass (for a backward one) is one slice's: a batch of 2,000
    28x28x16 float32 outputs (50 kB a sample) peaks at a small part of the 100 MB one of them takes."""
    import tracemalloc

    from modularcnn import execution

    net = Net(input_shape=(28, 28, 1), seed=0)
    net.add(Convolutional(16, 3, pad="same", activation="relu"))
    net.add(BatchNormalization())
    net.add(Convolutional(16, 3, pad="same", activation="relu"))
    net.add(Flatten())
    net.add(Dense(10))
    x = np.random.default_rng(4).standard_normal((2000, 28, 28, 1)).astype(np.float32)
    rows = execution.inference_rows(net, 2000)
    assert rows < 200
    tracemalloc.start()
    try:
        net.predict(x, batch_size=2000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    one_output = 2000 * 28 * 28 * 16 * 4
    assert peak < one_output / 4, (peak, one_output)
