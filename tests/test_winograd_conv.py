"""A lone stride-1 3x3 convolution by Winograd (any activation, any output size, inside residual
blocks) gives the reference kernels' results and passes the gradient check."""

import numpy as np
import pytest

from modularcnn import ExecutionOptions, Net, gradcheck, reference_kernels
from modularcnn.fusion import PlannedResidual, WinogradConv
from modularcnn.kernels.conv import conv_backward, conv_forward
from modularcnn.kernels.winograd_conv import tile_grid, winograd_conv_backward, winograd_conv_forward
from modularcnn.kernels.workspace import Workspace
from modularcnn.layers import (
    Activation,
    BatchNormalization,
    Convolutional,
    Dense,
    Flatten,
    Residual,
)
from modularcnn.training import strategies
from modularcnn.training.strategies import pool_of

from . import naive

# input (N, H, W, C), filters, pads: odd and even outputs, non-square, batch 1, odd channels
KERNEL_CASES = [
    ((2, 7, 5, 3), 4, ((1, 1), (1, 1))),     # 'same', odd output 7x5
    ((1, 6, 9, 7), 5, ((0, 0), (0, 0))),     # 'valid', 4x7
    ((3, 5, 5, 2), 1, ((0, 1), (2, 0))),     # asymmetric, 4x5
    ((1, 3, 3, 1), 2, ((0, 0), (0, 0))),     # one output pixel
    ((2, 8, 6, 6), 3, ((1, 1), (1, 1))),     # even output: no crop
]


@pytest.mark.parametrize("x_shape, filters, pads", KERNEL_CASES)
@pytest.mark.parametrize("chunk_bytes", [64, 2**30])      # one sample per chunk, one chunk
def test_the_kernel_matches_the_reference_and_a_naive_loop(x_shape, filters, pads, chunk_bytes):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape)
    kernel = rng.standard_normal((3, 3, x_shape[-1], filters))
    bias = rng.standard_normal(filters)
    workspace = Workspace()
    for _ in range(2):     # the second call reuses the workspace's arrays
        z, cache = winograd_conv_forward(x, kernel, bias, pads, workspace, chunk_bytes)
        out = tile_grid(x_shape, pads)[0]
        assert z.shape == (x_shape[0], *out, filters)
        np.testing.assert_allclose(z, naive.conv2d(x, kernel, bias, (1, 1), pads), rtol=1e-12,
                                   atol=1e-12)
        z_ref, cols = conv_forward(x, kernel, bias, (1, 1), pads, out)
        np.testing.assert_allclose(z, z_ref, rtol=1e-12, atol=1e-12)
        dz = rng.standard_normal(z.shape)
        got = winograd_conv_backward(dz, cache, kernel, True, workspace)
        expected = conv_backward(dz, cols, kernel, x_shape, (1, 1), pads)
        for a, b in zip(got, expected):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    dx, dkernel, _ = winograd_conv_backward(dz, cache, kernel, False, workspace)
    assert dx is None
    np.testing.assert_allclose(dkernel, expected[1], rtol=1e-12, atol=1e-12)


def test_the_kernel_is_its_own_adjoint_pair():
    # <conv(x), dz> = <x, dx> and = <kernel, dkernel> (the bias aside): the gradients are adjoints.
    rng = np.random.default_rng(3)
    x, kernel = rng.standard_normal((2, 5, 7, 3)), rng.standard_normal((3, 3, 3, 2))
    pads = ((1, 1), (1, 1))
    z, cache = winograd_conv_forward(x, kernel, None, pads)
    dz = rng.standard_normal(z.shape)
    dx, dkernel, _ = winograd_conv_backward(dz, cache, kernel)
    assert np.isclose(np.vdot(z, dz), np.vdot(x, dx), rtol=1e-12)
    assert np.isclose(np.vdot(z, dz), np.vdot(kernel, dkernel), rtol=1e-12)


@pytest.mark.parametrize("call, message", [
    (lambda: winograd_conv_forward(np.zeros((1, 4, 4, 2)), np.zeros((5, 5, 2, 1)), None,
                                   ((0, 0), (0, 0))), "kernel \\(3, 3, C, F\\)"),
    (lambda: winograd_conv_forward(np.zeros((1, 2, 4, 2)), np.zeros((3, 3, 2, 1)), None,
                                   ((0, 0), (0, 0))), "does not fit"),
    (lambda: winograd_conv_backward(np.zeros((1, 2, 2, 1)), winograd_conv_forward(
        np.zeros((1, 4, 5, 2)), np.zeros((3, 3, 2, 1)), None, ((0, 0), (0, 0)))[1],
        np.zeros((3, 3, 2, 1))), "expected dz of shape \\(1, 2, 3, 1\\)"),
])
def test_the_kernel_refuses_what_it_cannot_compute(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# -- in a network ----------------------------------------------------------------------------------

def lone_conv_net(channels=7, pad="same", activation=None, separate=None, height=7, width=5,
                  filters=3, then="dense", seed=0):
    """The 3x3 convolution under test (the input's), then ``then`` and a dense softmax."""
    net = Net(input_shape=(height, width, channels), dtype="float64", seed=seed)
    net.add(Convolutional(filters, 3, pad=pad, activation=activation))
    if separate:
        net.add(Activation(separate))
    if then == "batchnorm":
        net.add(BatchNormalization())
    net.add(Flatten())
    net.add(Dense(2, activation="softmax"))
    return net


def passes(net, x, options):
    net.execution_options = options
    y = net.forward(x, training=True)
    dx = net.backward(np.cos(np.arange(y.size)).reshape(y.shape))
    grads = {f"{layer.name}/{k}": g.copy() for layer in net.layers for k, g in layer.grads.items()}
    return y, dx, grads, net.forward(x)


def assert_same_as_reference(net, x):
    weights = net.get_weights()         # with batch norm's moving statistics, which training moves
    fast = passes(net, x, ExecutionOptions())
    net.set_weights(weights)
    with reference_kernels():
        reference = passes(net, x, ExecutionOptions())
    for a, b in zip(fast[:2] + fast[3:], reference[:2] + reference[3:]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    assert fast[2].keys() == reference[2].keys()
    for key in fast[2]:
        np.testing.assert_allclose(fast[2][key], reference[2][key], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("activation, separate", [
    (None, None), ("relu", None), ("gelu", None), ("tanh", None), (None, "relu"), ("elu", None)])
@pytest.mark.parametrize("channels, pad, height, width, batch", [
    (7, "same", 7, 5, 3), (6, "valid", 6, 9, 1), (9, ((0, 1), (2, 0)), 5, 5, 2)])
def test_a_lone_3x3_convolution_runs_winograd_and_matches_the_reference(
        activation, separate, channels, pad, height, width, batch):
    net = lone_conv_net(channels, pad, activation, separate, height, width)
    assert type(net.plan()[0]) is WinogradConv
    assert "winograd_conv" in str(net.plan())
    x = np.random.default_rng(1).standard_normal((batch,) + net.input_shape)
    assert_same_as_reference(net, x)


@pytest.mark.parametrize("channels, height, width, batch, then", [
    (7, 7, 5, 1, "dense"), (6, 4, 9, 2, "batchnorm"), (11, 5, 6, 1, "batchnorm")])
def test_a_lone_winograd_convolution_passes_the_gradient_check(channels, height, width, batch, then):
    net = lone_conv_net(channels, "same", "tanh", None, height, width, then=then)
    assert type(net.plan()[0]) is WinogradConv
    assert max(gradcheck(net, batch_size=batch).values()) < 1e-6


@pytest.mark.parametrize("options, kind", [
    (ExecutionOptions(), WinogradConv), (ExecutionOptions(winograd=False), Convolutional),
    (ExecutionOptions(fused=False), Convolutional), (ExecutionOptions.reference(), Convolutional)])
def test_the_options_choose_winograd_for_a_lone_convolution(options, kind):
    net = lone_conv_net()
    net.execution_options = options
    assert type(net.plan()[0]) is kind
    with reference_kernels():
        assert type(net.plan()[0]) is Convolutional


@pytest.mark.parametrize("layer", [
    Convolutional(3, 3, pad=1, stride=2), Convolutional(3, 5, pad=2), Convolutional(3, 3, pad=2,
                                                                                    dilation_rate=2),
    Convolutional(3, 3, pad=1, pad_value=1.0), Convolutional(3, 3, pad=1, groups=3)])
def test_other_convolutions_run_the_layer(layer):
    net = Net(input_shape=(6, 6, 6), dtype="float64")
    net.add(layer)
    assert net.plan().kinds() == ["Convolutional"]
    net = Net(input_shape=(6, 6, 5), dtype="float64")   # too few channels to repay the transforms
    net.add(Convolutional(3, 3, pad=1))
    assert net.plan().kinds() == ["Convolutional"]


def test_a_backward_pass_after_inference_matches_one_after_training():
    net = lone_conv_net(8, "same", "relu")
    x = np.random.default_rng(2).standard_normal((2,) + net.input_shape)
    dy = np.random.default_rng(3).standard_normal((2, 2))
    net.forward(x, training=True)
    after_training = net.backward(dy), net.layers[0].grads["kernel"].copy()
    net.forward(x)
    after_inference = net.backward(dy), net.layers[0].grads["kernel"].copy()
    for a, b in zip(after_training, after_inference):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_float32_stays_float32():
    net = Net(input_shape=(6, 5, 8), dtype="float32", seed=0)
    net.add(Convolutional(4, 3, pad="same", activation="relu"))
    net.add(Flatten())
    net.add(Dense(2))
    x = np.random.default_rng(0).standard_normal((2, 6, 5, 8)).astype(np.float32)
    assert net.plan().kinds()[0] == "WinogradConv"
    y = net.forward(x, training=True)
    dx = net.backward(np.ones_like(y))
    dk = net.layers[0].grads["kernel"].copy()
    assert y.dtype == dx.dtype == dk.dtype == np.float32
    # Winograd's transforms round differently from im2col, within float32's precision.
    with reference_kernels():
        y_ref = net.forward(x, training=True)
        dx_ref = net.backward(np.ones_like(y_ref))
    for fast, reference in [(y, y_ref), (dx, dx_ref), (dk, net.layers[0].grads["kernel"])]:
        np.testing.assert_allclose(fast, reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max())


# -- residual blocks and stacks --------------------------------------------------------------------

def resnet(channels=6, height=7, width=5, seed=0, shortcut=None):
    """The shape of scripts/resnet_mnist.py, small. Convolutions before a batch norm have no bias:
    the norm takes out its gradient (and the gradient check would compare zeros)."""
    def conv(filters, bias=False):
        return Convolutional(filters, 3, pad="same", use_bias=bias)

    net = Net(input_shape=(height, width, 1), dtype="float64", seed=seed)
    net.add(conv(channels))
    net.add(BatchNormalization())
    net.add(Activation("relu"))
    net.add(Residual([conv(channels), BatchNormalization(), Activation("relu"), conv(channels),
                      BatchNormalization()]))
    net.add(Activation("relu"))
    net.add(Residual([conv(channels + 1), BatchNormalization(), Activation("relu"),
                      conv(channels + 1, bias=True)], shortcut=shortcut))
    net.add(Flatten())
    net.add(Dense(2, activation="softmax"))
    return net


def test_convolutions_inside_residual_blocks_run_their_own_plan():
    net = resnet()
    steps = net.plan().steps
    # Batch norm and the ReLU after it are one step (BatchNormStep), outside the blocks and in them.
    assert [type(step) for step in steps[2:5]] == [PlannedResidual, Activation, PlannedResidual]
    assert [type(step).__name__ for step in steps[2].steps[0]] == [
        "WinogradConv", "BatchNormStep", "WinogradConv", "BatchNormStep"]
    assert [type(step).__name__ for step in steps[4].steps[1]] == ["Convolutional"]  # 1x1 projection
    assert "block: WinogradConv, BatchNormStep" in str(net.plan())
    assert net.plan().layers == net.layers
    with reference_kernels():
        assert net.plan().kinds() == [type(layer).__name__ for layer in net.layers]


@pytest.mark.parametrize("shortcut", [None, "projection_bn"])
def test_a_planned_residual_block_matches_the_reference(shortcut):
    net = resnet(shortcut=shortcut)
    x = np.random.default_rng(4).standard_normal((3,) + net.input_shape)
    assert_same_as_reference(net, x)


def test_a_planned_residual_block_passes_the_gradient_check():
    net = resnet(channels=6, height=5, width=4)
    assert any(isinstance(step, PlannedResidual) for step in net.plan())
    assert max(gradcheck(net, batch_size=1).values()) < 1e-6


def test_a_nested_stack_plans_its_layers():
    inner = Net(input_shape=(6, 5, 7), dtype="float64", seed=1)
    inner.add(Convolutional(7, 3, pad="same", activation="relu"))
    inner.add(Convolutional(7, 3, pad="same"))
    net = Net(input_shape=(6, 5, 7), dtype="float64", seed=0)
    net.add(inner)
    net.add(Flatten())
    net.add(Dense(2, activation="softmax"))
    assert inner.plan().kinds() == ["WinogradConv", "WinogradConv"]
    x = np.random.default_rng(5).standard_normal((2, 6, 5, 7))
    assert_same_as_reference(net, x)


def test_training_with_two_workers_matches_one_process():
    def fitted(workers):
        net = resnet(seed=3)
        net.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        rng = np.random.default_rng(6)
        x, y = rng.standard_normal((16,) + net.input_shape), rng.integers(0, 2, 16)
        try:
            net.fit(x, y, epochs=1, batch_size=8, verbose=0, workers=workers, shuffle=False)
            ran = pool_of(net).ran() if workers > 1 else None
        finally:
            strategies.close_pool(net)
        return net.get_weights(), ran

    (single, _), (double, ran) = fitted(1), fitted(2)
    assert ran and all("PlannedResidual" in kinds for kinds in ran), ran
    for a, b in zip(single, double):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_fit_with_a_first_layer_on_winograd_matches_the_reference_fit():
    # The first layer needs no input gradient: the step skips that product, as the layer does.
    def fitted(options):
        net = lone_conv_net(channels=6, pad="same", activation="relu", height=6, width=5, seed=4)
        net.execution_options = options
        net.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        rng = np.random.default_rng(7)
        x, y = rng.standard_normal((10,) + net.input_shape), rng.integers(0, 2, 10)
        net.fit(x, y, epochs=2, batch_size=4, verbose=0, shuffle=False)
        return net.get_weights(), type(net.plan()[0])

    (fast, kind), (reference, _) = fitted(ExecutionOptions()), fitted(ExecutionOptions.reference())
    assert kind is WinogradConv
    for a, b in zip(fast, reference):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_a_frozen_residual_block_keeps_its_batch_norms_in_inference_through_its_plan():
    net = resnet()
    net.layers[3].trainable = False
    assert any(isinstance(step, PlannedResidual) for step in net.plan())
    x = np.random.default_rng(8).standard_normal((3,) + net.input_shape)
    assert_same_as_reference(net, x)
