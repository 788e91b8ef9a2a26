"""The fused Convolutional(ReLU) + 2x2 MaxPooling step gives the same results as the two layers."""

import numpy as np
import pytest

from modularcnn import Net, gradcheck
from modularcnn.execution import can_fuse, execution_plan
from modularcnn.fusion import (
    ConvReluPool,
    PatchConvReluPool,
    SlotMajorConvReluPool,
    WinogradConvReluPool,
)
from modularcnn.layers import Activation, Convolutional, Dense, Flatten, MaxPooling


def pair_net(channels, pad, kernel=3, use_bias=True, height=8, width=6, dtype="float64", seed=0):
    net = Net(input_shape=(height, width, channels), dtype=dtype, seed=seed)
    net.add(Convolutional(4, kernel, pad=pad, activation="relu", use_bias=use_bias))
    net.add(MaxPooling(2))
    net.add(Flatten())
    net.add(Dense(3, activation="softmax"))
    return net


def run(net, x, fusion):
    net.fusion = fusion
    y = net.forward(x, training=True)
    dx = net.backward(np.cos(np.arange(y.size)).reshape(y.shape).astype(y.dtype))
    grads = {f"{layer.name}/{k}": g.copy() for layer in net.layers for k, g in layer.grads.items()}
    return y, dx, grads


@pytest.mark.parametrize("channels, pad, kernel, use_bias", [
    (1, 1, 3, True),      # one channel: patches
    (3, 1, 3, True),      # 3x3, a few channels: slot-major
    (12, 1, 3, True),     # 3x3, many channels: Winograd
    (12, 0, 3, False),    # Winograd, valid padding: 6x4 output
    (12, ((0, 2), (1, 1)), 3, True),  # Winograd, asymmetric padding
    (1, 2, 5, False),     # LeNet's first layer shape family
    (1, ((0, 1), (1, 1)), (2, 3), True),  # one channel: 3x4 patches, asymmetric padding
    (1, (1, 0), (3, 1), True),   # one channel, a one-column kernel
    (5, "same", 4, True), # slot-major, asymmetric "same" padding
    (2, (2, 1), (5, 3), True),   # slot-major, non-square kernel
])
def test_fused_step_matches_the_layers_exactly(channels, pad, kernel, use_bias):
    net = pair_net(channels, pad, kernel, use_bias)
    assert isinstance(execution_plan(net.layers)[0], ConvReluPool)
    x = np.random.default_rng(1).standard_normal((3,) + net.input_shape)
    y_fused, dx_fused, g_fused = run(net, x, True)
    y_plain, dx_plain, g_plain = run(net, x, False)
    np.testing.assert_allclose(y_fused, y_plain, rtol=1e-12, atol=1e-12)
    net.fusion = True   # inference may take another layout (Winograd's step does)
    np.testing.assert_allclose(net.forward(x), y_plain, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx_fused, dx_plain, rtol=1e-12, atol=1e-12)
    assert g_fused.keys() == g_plain.keys()
    for key in g_fused:
        np.testing.assert_allclose(g_fused[key], g_plain[key], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("samples_per_chunk", [1, 2])
def test_winograd_training_in_chunks_of_samples_matches_the_layers(monkeypatch, samples_per_chunk):
    net = pair_net(12, 1, height=6, width=4)
    step = execution_plan(net.layers)[0]
    assert isinstance(step, WinogradConvReluPool)
    per_sample = 16 * 3 * 2 * (12 + 4) * 8          # 16 transforms of 3x2 tiles, 12 + 4 channels
    monkeypatch.setattr(WinogradConvReluPool, "CHUNK_BYTES", samples_per_chunk * per_sample)
    x = np.random.default_rng(4).standard_normal((5,) + net.input_shape)
    expected_sizes = {1: [1, 1, 1, 1, 1], 2: [1, 2, 2]}[samples_per_chunk]
    assert [part.stop - part.start for part in step._chunks(x)] == expected_sizes
    y_fused, dx_fused, g_fused = run(net, x, True)
    y_plain, dx_plain, g_plain = run(net, x, False)
    np.testing.assert_allclose(y_fused, y_plain, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx_fused, dx_plain, rtol=1e-12, atol=1e-12)
    for key in g_fused:
        np.testing.assert_allclose(g_fused[key], g_plain[key], rtol=1e-10, atol=1e-12)
    net.fusion = True
    assert max(gradcheck(net, batch_size=3).values()) < 1e-6


@pytest.mark.parametrize("channels, kernel, layout", [
    (1, 3, PatchConvReluPool), (6, 3, WinogradConvReluPool), (5, 3, SlotMajorConvReluPool),
    (12, (3, 5), SlotMajorConvReluPool),
])
def test_the_layout_follows_the_kernel_and_channels(channels, kernel, layout):
    assert type(execution_plan(pair_net(channels, 1, kernel).layers)[0]) is layout


@pytest.mark.parametrize("channels, kernel, batch", [(2, 3, 2), (12, 3, 1), (1, 3, 1), (2, 5, 1)])
def test_fused_step_passes_the_gradient_check(channels, kernel, batch):
    net = pair_net(channels, kernel // 2, kernel, height=6, width=10)
    assert isinstance(execution_plan(net.layers)[0], ConvReluPool)
    assert max(gradcheck(net, batch_size=batch).values()) < 1e-6


@pytest.mark.parametrize("channels", [1, 2, 12])
def test_ties_and_dead_units_route_like_the_layers(channels):
    net = pair_net(channels, 1, use_bias=False, height=4, width=4)
    net.layers[0].params["kernel"][:] = 0
    net.layers[0].params["kernel"][1, 1, 0, :] = 1   # output = input: ties wherever the input ties
    x = np.ones((3, 4, 4, channels))
    x[1] = -1                                          # all negative: ReLU kills every unit
    x[2, ..., 0] = np.tile([[1, 2], [2, 0]], (2, 2))   # top-right and bottom-left tie in each window
    (y_fused, dx_fused, _), (y_plain, dx_plain, _) = run(net, x, True), run(net, x, False)
    np.testing.assert_array_equal(y_fused, y_plain)
    # The gradient reaches exactly the same cells (the sums may differ in the last bit).
    np.testing.assert_array_equal(dx_fused != 0, dx_plain != 0)
    np.testing.assert_allclose(dx_fused, dx_plain, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("make", [
    lambda: [Convolutional(2, 3, pad=1, activation="gelu"), MaxPooling(2)],   # not monotone
    lambda: [Convolutional(2, 3, stride=2, pad=1, activation="relu"), MaxPooling(2)],
    lambda: [Convolutional(2, 3, pad=1, activation="relu"), MaxPooling(3, 2)],
    lambda: [Convolutional(2, 2, pad=1, activation="relu"), MaxPooling(2)],   # 9x7: odd output
    lambda: [Convolutional(2, 3, pad=1), Activation("relu"), MaxPooling(3, 2)],
])
def test_other_pairs_run_unfused(make):
    net = Net(input_shape=(8, 6, 1))
    for layer in make():
        net.add(layer)
    assert not can_fuse(net.layers[0], net.layers[1])
    assert all(not isinstance(step, ConvReluPool) for step in execution_plan(net.layers))
    net.forward(np.ones((2, 8, 6, 1)), training=True)


@pytest.mark.parametrize("channels", [1, 3, 12])    # patches, slot-major, Winograd
def test_float32_is_preserved_and_training_matches_unfused(channels):
    rng = np.random.default_rng(0)
    x = rng.random((64, 8, 6, channels)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    weights = []
    for fusion in (True, False):
        net = pair_net(channels, 1, dtype="float32", seed=3)
        net.fusion = fusion
        assert net.predict(x).dtype == np.float32
        net.fit(x, y, epochs=2, batch_size=16, verbose=0)
        assert all(w.dtype == np.float32 for w in net.get_weights())
        weights.append(net.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("channels, kernel, layout", [
    (1, 3, PatchConvReluPool), (12, 3, WinogradConvReluPool), (3, 5, SlotMajorConvReluPool),
])
def test_a_backward_pass_after_inference_matches_one_after_training(channels, kernel, layout):
    net = pair_net(channels, kernel // 2, kernel)
    x = np.random.default_rng(5).standard_normal((3,) + net.input_shape)
    results = []
    for training in (True, False):
        y = net.forward(x, training=training)
        step = net._plan[0]
        assert type(step) is layout
        if not training:
            assert step._inference_input is x       # nothing else kept: redone by the backward pass
        dx = net.backward(np.cos(np.arange(y.size)).reshape(y.shape))
        results.append((y, dx, {key: g.copy() for key, g in net.layers[0].grads.items()}))
    (y_t, dx_t, g_t), (y_i, dx_i, g_i) = results
    np.testing.assert_allclose(y_i, y_t, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx_i, dx_t, rtol=1e-12, atol=1e-12)
    for key in g_t:
        np.testing.assert_allclose(g_i[key], g_t[key], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("channels, kernel", [(1, 3), (12, 3), (3, 3)])
def test_large_inference_batches_go_in_slices_with_the_same_results(monkeypatch, channels, kernel):
    net = pair_net(channels, kernel // 2, kernel)
    x = np.random.default_rng(2).standard_normal((7,) + net.input_shape)
    step = execution_plan(net.layers)[0]
    whole = net.predict(x, batch_size=7)
    y = net.forward(x)
    dx = net.backward(np.ones_like(y))
    grads = {key: g.copy() for key, g in net.layers[0].grads.items()}
    # Windows of two samples per slice: 7 samples go as 2 + 2 + 2 + 1.
    monkeypatch.setattr(Convolutional, "INFERENCE_WINDOW_BYTES", 2 * step.scratch_values(1) * 8)
    slices = []
    original = type(step)._forward
    monkeypatch.setattr(type(step), "_forward", lambda self, x: slices.append(len(x)) or original(self, x))
    np.testing.assert_allclose(net.predict(x, batch_size=7), whole, rtol=1e-12)
    assert slices == [2, 2, 2, 1]
    # A backward pass after a sliced inference pass redoes the windows of the whole batch first.
    np.testing.assert_allclose(net.backward(np.ones_like(y)), dx, rtol=1e-12)
    for key, g in net.layers[0].grads.items():
        np.testing.assert_allclose(g, grads[key], rtol=1e-12)
    assert net.forward(x, training=True).shape == whole.shape  # training never slices


# -- the ReLU as its own layer: Convolutional, Activation("relu") / ReLU(), MaxPooling -------------

def separate_relu_net(channels, pad, kernel, relu_layer, height=8, width=6, filters=4,
                      dtype="float64", seed=0):
    from modularcnn.layers import ReLU  # noqa: PLC0415 - the layer, not the activation function

    net = Net(input_shape=(height, width, channels), dtype=dtype, seed=seed)
    net.add(Convolutional(filters, kernel, pad=pad))
    net.add(Activation("relu") if relu_layer == "activation" else ReLU())
    net.add(MaxPooling(2))
    net.add(Flatten())
    net.add(Dense(3, activation="softmax"))
    return net


@pytest.mark.parametrize("relu_layer", ["activation", "relu"])
@pytest.mark.parametrize("channels, pad, kernel, height, width, filters, layout", [
    (1, 1, 3, 8, 6, 4, PatchConvReluPool),        # one channel: patches
    (3, 1, 3, 8, 6, 5, SlotMajorConvReluPool),    # a few channels, odd filter count
    (7, 0, 3, 8, 10, 3, WinogradConvReluPool),    # Winograd, odd channels, valid, 6x8 output
    (5, (2, 1), (5, 3), 8, 6, 3, SlotMajorConvReluPool),  # non-square kernel and padding
])
def test_a_separate_relu_layer_is_fused_like_activation_relu(relu_layer, channels, pad, kernel,
                                                             height, width, filters, layout):
    net = separate_relu_net(channels, pad, kernel, relu_layer, height, width, filters)
    steps = execution_plan(net.layers)
    assert isinstance(steps[0], layout)
    assert steps[0].layers == tuple(net.layers[:3])       # conv + relu layer + pool, one step
    assert net.plan().rows()[0][1] == " + ".join(layer.name for layer in net.layers[:3])
    x = np.random.default_rng(2).standard_normal((3,) + net.input_shape)
    y_fused, dx_fused, g_fused = run(net, x, True)
    y_plain, dx_plain, g_plain = run(net, x, False)
    np.testing.assert_allclose(y_fused, y_plain, rtol=1e-12, atol=1e-12)
    net.fusion = True
    np.testing.assert_allclose(net.forward(x), y_plain, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx_fused, dx_plain, rtol=1e-12, atol=1e-12)
    assert g_fused.keys() == g_plain.keys()
    for key in g_fused:
        np.testing.assert_allclose(g_fused[key], g_plain[key], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("channels, height, width, batch", [(1, 6, 10, 1), (3, 10, 6, 2),
                                                           (7, 6, 8, 1)])
def test_a_separate_relu_layer_fused_passes_gradcheck(channels, height, width, batch):
    net = separate_relu_net(channels, 1, 3, "activation", height, width, filters=3)
    assert isinstance(execution_plan(net.layers)[0], ConvReluPool)
    net.fusion = True
    assert max(gradcheck(net, batch_size=batch).values()) < 1e-6


def test_only_a_non_decreasing_activation_layer_after_a_linear_convolution_is_fused():
    from modularcnn.layers import LeakyReLU, ReLU  # noqa: PLC0415

    def first_step(conv, middle):
        net = Net(input_shape=(8, 8, 3), dtype="float64", seed=0)
        for layer in (conv, middle, MaxPooling(2), Flatten(), Dense(2)):
            net.add(layer)
        return execution_plan(net.layers)[0]

    for middle in (ReLU(), LeakyReLU(0.1), Activation("tanh"), Activation("sigmoid")):
        assert isinstance(first_step(Convolutional(4, 3, pad=1), middle), ConvReluPool), middle
    for conv, middle in ((Convolutional(4, 3, pad=1), ReLU(max_value=6)),      # capped
                         (Convolutional(4, 3, pad=1), Activation("gelu")),     # not monotone
                         (Convolutional(4, 3, pad=1), Activation("softmax")),
                         (Convolutional(4, 3, pad=1, activation="tanh"), Activation("relu")),
                         (Convolutional(4, 3, pad=1, activation="relu"), Activation("relu"))):
        assert isinstance(first_step(conv, middle), Convolutional), (conv, middle)


def test_a_fused_separate_relu_keeps_its_layer_in_summary_and_files(tmp_path):
    from modularcnn import load_model  # noqa: PLC0415

    net = separate_relu_net(3, 1, 3, "relu")
    net.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(3).standard_normal((4,) + net.input_shape)
    net.fit(x, np.arange(4) % 3, epochs=1, batch_size=2, verbose=0)
    lines = []
    net.summary(print_fn=lines.append)
    assert any(net.layers[1].name in line for line in lines)
    net.save(tmp_path / "net.h5")
    loaded = load_model(tmp_path / "net.h5")
    assert [type(layer).__name__ for layer in loaded.layers] == [type(layer).__name__
                                                                 for layer in net.layers]
    assert isinstance(execution_plan(loaded.layers)[0], ConvReluPool)
    np.testing.assert_allclose(loaded.predict(x), net.predict(x), rtol=1e-12, atol=1e-12)


# -- any non-decreasing activation: leaky ReLU, ELU, tanh, sigmoid, applied after the pool ---------

ACTIVATIONS = [("leakyrelu", 0.1), ("elu", 0.7), ("tanh", None), ("sigmoid", None)]


def activation_net(channels, pad, kernel, activation, alpha, separate, height, width, filters=3,
                   seed=0):
    net = Net(input_shape=(height, width, channels), dtype="float64", seed=seed)
    if separate:
        net.add(Convolutional(filters, kernel, pad=pad))
        net.add(Activation(activation, alpha=alpha))
    else:
        net.add(Convolutional(filters, kernel, pad=pad, activation=activation, alpha=alpha))
    net.add(MaxPooling(2))
    net.add(Flatten())
    net.add(Dense(3, activation="softmax"))
    return net


@pytest.mark.parametrize("activation, alpha", ACTIVATIONS)
@pytest.mark.parametrize("separate", [False, True])
@pytest.mark.parametrize("channels, pad, kernel, height, width, layout", [
    (1, 1, 3, 8, 6, PatchConvReluPool),
    (3, ((2, 0), (1, 1)), (5, 3), 8, 6, SlotMajorConvReluPool),
    (7, 0, 3, 8, 10, WinogradConvReluPool),
])
def test_fused_activation_pool_matches_the_layers(activation, alpha, separate, channels, pad,
                                                  kernel, height, width, layout):
    net = activation_net(channels, pad, kernel, activation, alpha, separate, height, width)
    step = execution_plan(net.layers)[0]
    assert isinstance(step, layout) and f"conv_{step.activation.name}_pool" in step.kernel
    x = 2 * np.random.default_rng(5).standard_normal((3,) + net.input_shape)
    y_fused, dx_fused, g_fused = run(net, x, True)
    y_plain, dx_plain, g_plain = run(net, x, False)
    np.testing.assert_allclose(y_fused, y_plain, rtol=1e-12, atol=1e-12)
    net.fusion = True
    np.testing.assert_allclose(net.forward(x), y_plain, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx_fused, dx_plain, rtol=1e-12, atol=1e-12)
    assert g_fused.keys() == g_plain.keys()
    for key in g_fused:
        np.testing.assert_allclose(g_fused[key], g_plain[key], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("activation, alpha", ACTIVATIONS)
@pytest.mark.parametrize("channels, height, width, batch", [(1, 6, 10, 1), (7, 10, 6, 2)])
def test_fused_activation_pool_passes_gradcheck(activation, alpha, channels, height, width, batch):
    net = activation_net(channels, 1, 3, activation, alpha, True, height, width)
    assert isinstance(execution_plan(net.layers)[0], ConvReluPool)
    net.fusion = True
    assert max(gradcheck(net, batch_size=batch).values()) < 1e-6
