"""The execution engine's seam: plans, options, the reference switch (in workers too), the fused
kernels against the reference ones, and the layer stack shared by Net, Residual and the profiler."""

import numpy as np
import pytest

import modularcnn
from modularcnn import ExecutionOptions, Net, activations, gradcheck, reference_kernels
from modularcnn.execution import options_for, plan, select_step
from modularcnn.kernels import conv_pool
from modularcnn.kernels.conv import conv_backward, conv_forward
from modularcnn.kernels.pooling import max_pool_backward, max_pool_forward
from modularcnn.layers import (
    BatchNormalization,
    Convolutional,
    Dense,
    Dropout,
    Flatten,
    MaxPooling,
    Residual,
)
from modularcnn.layers.stack import LayerStack
from modularcnn.training import strategies
from modularcnn.training.strategies import pool_of


def three_layout_net(dtype="float64", seed=0):
    """One fused step of each layout: patches (1 channel), Winograd (3x3, 8 channels), slot-major."""
    net = Net(input_shape=(16, 12, 1), dtype=dtype, seed=seed)
    net.add(Convolutional(8, 3, pad=1, activation="relu"))
    net.add(MaxPooling(2))
    net.add(Convolutional(6, 3, pad=1, activation="relu"))
    net.add(MaxPooling(2))
    net.add(Convolutional(5, (3, 2), pad=((1, 1), (1, 1)), activation="relu"))
    net.add(MaxPooling(2))
    net.add(Flatten())
    net.add(Dense(3, activation="softmax"))
    net.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    return net


# -- plans and options ---------------------------------------------------------------------------

def test_the_plan_names_each_step_and_the_layers_it_runs():
    net = three_layout_net()
    shown = net.plan()
    assert shown.kinds() == ["PatchConvReluPool", "WinogradConvReluPool", "SlotMajorConvReluPool",
                             "Flatten", "Dense"]
    assert shown.layers == net.layers
    text = str(shown)
    assert "convolutional + max_pooling" in text and "winograd layout (inference: slot_major)" in text
    assert "Dense.forward/backward (reference)" in text
    lines = []
    net.summary(print_fn=lines.append, show_plan=True)
    assert "Execution plan of" in lines[0] and "WinogradConvReluPool" in lines[0]
    lines = []
    net.summary(print_fn=lines.append)
    assert "Execution plan" not in lines[0]


def test_the_reference_switch_and_the_options_choose_the_plan():
    net = three_layout_net()
    with reference_kernels():
        assert net.plan().kinds() == [type(layer).__name__ for layer in net.layers]
        with reference_kernels():
            assert options_for(net).is_reference
        assert options_for(net).is_reference          # still inside the outer block
    assert net.plan().fused_steps                      # the block ended: fused steps again
    net.execution_options = ExecutionOptions(winograd=False)
    assert net.plan().kinds()[:3] == ["PatchConvReluPool", "SlotMajorConvReluPool",
                                      "SlotMajorConvReluPool"]
    net.fusion = False
    assert net.execution_options == ExecutionOptions(fused=False, winograd=False)
    assert not net.plan().fused_steps
    net.fusion = True
    assert net.fusion and net.execution_options.fused


def test_forward_keeps_its_plan_until_the_layers_or_the_options_change():
    """Planning once per forward cost a tenth of a one-image predict, so forward keeps its plan;
    a change of options (the switch, net.fusion) or of the layers (pop, add) plans again."""
    net = three_layout_net()
    x = np.random.default_rng(0).random((2, 16, 12, 1))
    net.forward(x)
    kept = net._plan
    net.forward(x)
    assert net._plan is kept
    with reference_kernels():
        net.forward(x)
        assert net._plan.kinds() == [type(layer).__name__ for layer in net.layers]
    net.forward(x)
    assert net._plan.fused_steps
    net.fusion = False
    net.forward(x)
    assert not net._plan.fused_steps
    net.fusion = True
    net.pop()
    net.add(Dense(4))
    net.forward(x)
    assert net._plan.layers == net.layers and net.output_shape == (4,)


def test_execution_options_round_trip_and_refuse_bad_values():
    options = ExecutionOptions(fused=True, winograd=False)
    assert ExecutionOptions.from_dict(options.to_dict()) == options
    assert ExecutionOptions.reference().describe() == "reference kernels"
    with pytest.raises(ValueError, match="unknown options.*'fast'"):
        ExecutionOptions.from_dict({"fast": True})
    with pytest.raises(ValueError, match="fused must be True or False, got 1"):
        ExecutionOptions(fused=1)


@pytest.mark.parametrize("activation", [
    activations.ReLU(max_value=2.0), activations.ReLU(negative_slope=0.1),
    activations.ReLU(threshold=0.5), "relu6", "gelu",
])
def test_only_a_plain_relu_is_fused(activation):
    """A capped, leaky or shifted ReLU is not max(z, 0), and GELU is not monotone: those pairs run
    as the two layers (the LeakyReLU activation has its own fused path, tests/test_fusion.py)."""
    net = Net(input_shape=(8, 6, 2), dtype="float64", seed=1)
    net.add(Convolutional(3, 3, pad=1, activation=activation))
    net.add(MaxPooling(2))
    assert not net.plan().fused_steps
    assert select_step(net.layers, 0, ExecutionOptions())[1] == 1


def test_the_package_exports_the_switch():
    assert modularcnn.reference_kernels is reference_kernels
    assert modularcnn.ExecutionOptions is ExecutionOptions


# -- every layout against the reference, in float64 ---------------------------------------------

def run_step(net, x, dy_seed=3):
    y = net.forward(x, training=True)
    dy = np.random.default_rng(dy_seed).standard_normal(y.shape)
    dx = net.backward(dy)
    grads = {f"{layer.name}/{k}": g.copy() for layer in net.layers for k, g in layer.grads.items()}
    return y, dx, grads


@pytest.mark.parametrize("options", [ExecutionOptions(), ExecutionOptions(winograd=False)])
def test_every_layout_matches_the_reference_kernels_to_1e_12(options):
    net = three_layout_net()
    net.execution_options = options
    x = np.random.default_rng(2).standard_normal((3,) + net.input_shape)
    fast = run_step(net, x)
    assert len(net._plan.fused_steps) == 3
    with reference_kernels():
        reference = run_step(net, x)
        assert not net._plan.fused_steps
    for a, b in zip(fast[:2], reference[:2]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    assert fast[2].keys() == reference[2].keys()
    for key in fast[2]:
        np.testing.assert_allclose(fast[2][key], reference[2][key], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(net.predict(x), net.forward(x, training=True), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layout, shape, kernel, pads, bias", [
    ("slot_major", (2, 7, 5, 3), (2, 4), ((1, 1), (2, 2)), True),   # non-square, odd input
    ("slot_major", (1, 6, 8, 5), (3, 3), ((1, 1), (1, 1)), False),  # batch 1, no bias
    ("patch", (3, 9, 6, 1), (4, 3), ((2, 0), (0, 2)), True),
    ("patch", (1, 5, 7, 1), (2, 2), ((1, 1), (0, 0)), True),
    ("winograd", (2, 7, 9, 5), (3, 3), ((1, 0), (1, 0)), True),     # odd channels, valid-ish pads
    ("winograd", (1, 4, 6, 7), (3, 3), ((1, 1), (0, 2)), False),
])
def test_the_fused_kernel_equals_conv_relu_pool_of_the_reference_kernels(layout, shape, kernel, pads,
                                                                         bias):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape)
    w = rng.standard_normal((*kernel, shape[-1], 4))
    b = rng.standard_normal(4) if bias else None
    out = tuple(n + p0 + p1 - k + 1 for n, (p0, p1), k in zip(shape[1:3], pads, kernel))
    z, cols = conv_forward(x, w, b, (1, 1), pads, out)
    a = np.maximum(z, 0)
    pooled_out = (out[0] // 2, out[1] // 2)
    y_ref, route = max_pool_forward(a, (2, 2), (2, 2), ((0, 0), (0, 0)), pooled_out)
    for chunk_bytes in (conv_pool.WINOGRAD_CHUNK_BYTES, 1):      # Winograd: one chunk, one sample each
        y, cache = conv_pool.conv_relu_pool_forward(x, w, b, pads, layout, chunk_bytes=chunk_bytes)
        np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
        y_inference, none = conv_pool.conv_relu_pool_forward(x, w, b, pads, layout, training=False)
        assert none is None
        np.testing.assert_allclose(y_inference, y_ref, rtol=1e-12, atol=1e-12)
        dy = rng.standard_normal(y.shape)
        dx, dw, db = conv_pool.conv_relu_pool_backward(dy, cache, w)
        da = max_pool_backward(dy, route, a.shape, (2, 2), (2, 2), ((0, 0), (0, 0)))
        dx_ref, dw_ref, db_ref = conv_backward(da * (z > 0), cols, w, x.shape, (1, 1), pads)
        np.testing.assert_allclose(dx, dx_ref, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(dw, dw_ref, rtol=1e-11, atol=1e-12)
        np.testing.assert_allclose(db, db_ref, rtol=1e-11, atol=1e-12)
        none_dx, dw_again, _ = conv_pool.conv_relu_pool_backward(dy, cache, w, input_grad_needed=False)
        assert none_dx is None
        np.testing.assert_allclose(dw_again, dw_ref, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("call, message", [
    (lambda x, w: conv_pool.conv_relu_pool_forward(x, w, None, ((1, 1), (1, 1)), "fast"),
     "layout must be one of"),
    (lambda x, w: conv_pool.conv_relu_pool_forward(x, w, None, ((1, 1), (1, 1)), "patch"),
     "one input channel, got 2"),
    (lambda x, w: conv_pool.conv_relu_pool_forward(x, w[:2], None, ((1, 1), (1, 1)), "winograd"),
     "3x3 kernels"),
    (lambda x, w: conv_pool.conv_relu_pool_forward(x, w, None, ((1, 0), (1, 1)), "slot_major"),
     "must be even"),
    (lambda x, w: conv_pool.conv_relu_pool_backward(x, None, w), "training=True"),
])
def test_the_fused_kernel_refuses_what_it_cannot_compute(call, message):
    x, w = np.zeros((1, 6, 6, 2)), np.zeros((3, 3, 2, 4))
    with pytest.raises(ValueError, match=message):
        call(x, w)


def test_a_net_with_every_layout_passes_the_gradient_check():
    net = three_layout_net()
    assert len(net.plan().fused_steps) == 3
    assert max(gradcheck(net, batch_size=1).values()) < 1e-6


# -- the switch reaches every process -----------------------------------------------------------

def test_fit_with_two_workers_and_the_reference_switch_runs_no_fused_step_anywhere():
    net = three_layout_net()
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((24,) + net.input_shape), rng.integers(0, 3, 24)
    try:
        with reference_kernels():
            net.fit(x, y, epochs=1, batch_size=12, verbose=0, workers=2, shuffle=False)
            ran = pool_of(net).ran()          # what each worker's last forward pass ran
            assert ran == [[type(layer).__name__ for layer in net.layers]] * 2, ran
            reference_weights = net.get_weights()
        net.set_weights([w for w in reference_weights])
        net.fit(x, y, epochs=1, batch_size=12, verbose=0, workers=2, shuffle=False)
        ran = pool_of(net).ran()              # outside the block the same workers fuse again
        assert ran == [net.plan().kinds()] * 2 and "WinogradConvReluPool" in ran[0], ran
    finally:
        strategies.close_pool(net)


def test_execution_options_reach_the_workers():
    net = three_layout_net()
    net.execution_options = ExecutionOptions(winograd=False)
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((16,) + net.input_shape), rng.integers(0, 3, 16)
    try:
        net.fit(x, y, epochs=1, batch_size=16, verbose=0, workers=2)
        ran = pool_of(net).ran()
        assert ran == [net.plan().kinds()] * 2 and "WinogradConvReluPool" not in ran[0], ran
    finally:
        strategies.close_pool(net)


def test_a_network_nested_as_a_layer_plans_within_the_enclosing_networks_options():
    inner = Net(input_shape=(10, 8, 8), dtype="float64", seed=1, name="inner")
    inner.add(Convolutional(8, 3, pad=1, activation="relu"))   # 8 channels, 3x3: Winograd + pool
    inner.add(MaxPooling(2))
    outer = Net(input_shape=(10, 8, 8), dtype="float64", seed=2)
    outer.add(inner)
    outer.add(Flatten())
    outer.add(Dense(3, activation="softmax"))
    x = np.random.default_rng(3).standard_normal((2, 10, 8, 8))
    with reference_kernels():
        expected = outer.predict(x)
    fused = outer.predict(x)
    assert inner._plan.kinds() == ["WinogradConvReluPool"]   # the plan its last forward pass ran
    outer.fusion = False                                       # the outer switch reaches the inner net
    unfused = outer.predict(x)
    assert inner._plan.kinds() == ["Convolutional", "MaxPooling"]
    outer.fusion, inner.fusion = True, False                   # the inner net's own switch still holds
    outer.predict(x)
    assert inner._plan.kinds() == ["Convolutional", "MaxPooling"]
    np.testing.assert_allclose(fused, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(unfused, expected)
    assert ExecutionOptions().within(ExecutionOptions(winograd=False)) == ExecutionOptions(winograd=False)


# -- the layer stack ------------------------------------------------------------------------------

def test_the_stack_names_builds_and_runs_layers_like_a_net():
    layers = [Convolutional(3, 3, pad=1), Dropout(0.5), Flatten(), Dense(4), Dense(2, name="out")]
    stack = LayerStack(layers)
    names = stack.name_all()
    assert [layer.name for layer in layers] == ["convolutional", "dropout", "flatten", "dense", "out"]
    assert names == {"convolutional", "dropout", "flatten", "dense", "out"}
    rng = np.random.default_rng(0)
    assert stack.build((5, 4, 2), rng, np.dtype("float64")) == (2,)
    assert stack.output_shape((5, 4, 2)) == (2,)
    x = np.random.default_rng(1).standard_normal((3, 5, 4, 2))
    y = stack.forward(x, training=True, rng=np.random.default_rng(2))
    by_hand = x
    for layer in layers:
        layer.rng = np.random.default_rng(2) if isinstance(layer, Dropout) else layer.rng
    for layer in layers:
        by_hand = layer.forward(by_hand, training=True)
    np.testing.assert_array_equal(y, by_hand)
    assert stack.backward(np.ones_like(y), input_grad_needed=False) is None
    assert layers[0].input_grad_needed          # restored after the pass
    assert list(stack.trainable_params()) == ["convolutional/kernel", "convolutional/bias",
                                              "dense/kernel", "dense/bias", "out/kernel", "out/bias"]
    assert stack.trainable_grads().keys() == stack.trainable_params().keys()
    params = stack.params()
    assert params["out/bias"] is layers[-1].params["bias"]
    assert stack.count_params() == sum(layer.count_params() for layer in layers)
    with pytest.raises(ValueError, match="'out' is already"):
        LayerStack(layers + [Dense(1, name="out")]).name_all()


def test_net_and_residual_share_the_stack():
    block = [Convolutional(2, 3, pad=1, use_bias=False), BatchNormalization()]
    net = Net(input_shape=(6, 6, 2), seed=0, dtype="float64")
    net.add(Residual(block, shortcut="projection_bn"))
    net.add(Flatten())
    net.add(Dense(2, name="dense_x"))
    net.add(Dense(2))
    assert [layer.name for layer in net.layers] == ["residual", "flatten", "dense_x", "dense_1"]
    residual = net.layers[0]
    assert [layer.name for layer in residual.sublayers] == [
        "convolutional", "batch_normalization", "shortcut_convolutional",
        "shortcut_batch_normalization"]
    assert "batch_normalization/moving_mean" in residual.non_trainable_params
    assert "shortcut_convolutional/kernel" in residual.trainable_params
    assert max(gradcheck(net, batch_size=2).values()) < 1e-6


def test_plan_is_a_pure_function_of_layers_and_options():
    net = three_layout_net()
    first, second = plan(net.layers), plan(net.layers)
    assert first.kinds() == second.kinds() and first[0] is not second[0]
    assert plan(net.layers, ExecutionOptions.reference()).steps == net.layers
