"""The fast steps of modularcnn.fast_steps give the numbers of the layers' own reference passes."""

import numpy as np
import pytest

import modularcnn
from modularcnn import Net, gradcheck
from modularcnn.execution import plan
from modularcnn.fast_steps import AveragePoolStep, BatchNormStep
from modularcnn.fusion import PlannedResidual
from modularcnn.kernels import batch_norm, pooling
from modularcnn.layers import (
    Activation,
    AveragePooling,
    AveragePooling1D,
    AveragePooling3D,
    BatchNormalization,
    Convolutional,
    Dense,
    Flatten,
    LeakyReLU,
    ReLU,
    Reshape,
    Residual,
)
from modularcnn.training import strategies


def network_state(net):
    return {f"{layer.name}/{key}": value.copy() for layer in net.layers
            for key, value in layer.params.items()}


def restore(net, state):
    for layer in net.layers:
        for key in layer.params:
            layer.params[key][...] = state[f"{layer.name}/{key}"]


def passes(net, x, fused, training):
    """Output, input gradient, every gradient and every parameter (moving statistics included)
    after one forward and backward pass."""
    net.fusion = fused
    y = net.forward(x, training=training)
    dy = np.cos(np.arange(y.size)).reshape(y.shape).astype(y.dtype)
    dx = net.backward(dy)
    grads = {f"{layer.name}/{k}": g.copy() for layer in net.layers for k, g in layer.grads.items()}
    return y, dx, grads, network_state(net)


def assert_same_passes(net, x):
    """Training and inference passes, fast and reference, from the same starting state."""
    start = network_state(net)
    for training in (True, False):
        results = []
        for fused in (True, False):
            restore(net, start)
            results.append(passes(net, x, fused, training))
        (y, dx, grads, state), (y_ref, dx_ref, grads_ref, state_ref) = results
        np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(dx, dx_ref, rtol=1e-12, atol=1e-12)
        assert grads.keys() == grads_ref.keys()
        for key in grads:
            np.testing.assert_allclose(grads[key], grads_ref[key], rtol=1e-12, atol=1e-12, err_msg=key)
        for key in state:
            np.testing.assert_allclose(state[key], state_ref[key], rtol=1e-12, atol=1e-14, err_msg=key)
    net.fusion = True


def bn_net(shape, after=None, dtype="float64", center=True, scale=True, seed=0):
    """A convolution (no bias: batch norm cancels it), batch norm, an optional layer, a dense head."""
    net = Net(input_shape=shape, dtype=dtype, seed=seed)
    if len(shape) == 3:
        net.add(Convolutional(5, (3, 2), pad=1, stride=(2, 3) if shape[0] > 4 else 1, use_bias=False))
    else:
        net.add(Dense(7, use_bias=False))
    net.add(BatchNormalization(momentum=0.8, center=center, scale=scale, epsilon=1e-2))
    if after is not None:
        net.add(after)
    net.add(Flatten())
    net.add(Dense(3, activation="softmax"))
    return net


def randomise(net, seed=5):
    """Non-trivial gamma, beta and moving statistics (the initial ones are 1 and 0)."""
    rng = np.random.default_rng(seed)
    for layer in net.layers:
        if isinstance(layer, BatchNormalization):
            for key, value in layer.params.items():
                value[...] = (rng.uniform(0.5, 1.5, value.shape) if key in ("gamma", "moving_variance")
                              else rng.standard_normal(value.shape))


AFTER = {"none": lambda: None, "activation relu": lambda: Activation("relu"), "ReLU()": ReLU}


@pytest.mark.parametrize("after", sorted(AFTER))
@pytest.mark.parametrize("shape, batch", [((9, 7, 3), 3), ((9, 7, 3), 1), ((5,), 4), ((3, 5, 1), 2)])
def test_batch_norm_step_matches_the_layers(after, shape, batch):
    net = bn_net(shape, AFTER[after]())
    randomise(net)
    steps = net.plan().steps
    assert isinstance(steps[1], BatchNormStep)
    assert len(steps[1].layers) == (1 if after == "none" else 2)
    x = np.random.default_rng(1).standard_normal((batch,) + net.input_shape) * 3 + 1
    assert_same_passes(net, x)


def test_a_frozen_batch_norm_step_runs_in_inference_mode_like_the_layer():
    net = bn_net((6, 5, 3), ReLU())
    randomise(net)
    net.layers[1].trainable = False
    before = network_state(net)
    assert isinstance(net.plan().steps[1], BatchNormStep)
    assert_same_passes(net, np.random.default_rng(2).standard_normal((3, 6, 5, 3)))
    restore(net, before)
    passes(net, np.random.default_rng(2).standard_normal((3, 6, 5, 3)), True, True)
    for key in ("moving_mean", "moving_variance"):
        np.testing.assert_array_equal(net.layers[1].params[key],
                                      before[f"{net.layers[1].name}/{key}"])


@pytest.mark.parametrize("center, scale", [(False, True), (True, False), (False, False)])
def test_batch_norm_step_without_gamma_or_beta_matches_the_layers(center, scale):
    net = bn_net((6, 5, 3), Activation("relu"), center=center, scale=scale)
    randomise(net)
    assert_same_passes(net, np.random.default_rng(2).standard_normal((2, 6, 5, 3)))


@pytest.mark.parametrize("shape, batch, after", [((7, 5, 3), 1, None), ((6, 9, 1), 2, "relu"),
                                                 ((5,), 3, "relu"), ((8, 7, 3), 3, "relu")])
def test_batch_norm_step_passes_the_gradient_check(shape, batch, after):
    net = bn_net(shape, Activation(after) if after else None)
    randomise(net)
    assert isinstance(net.plan().steps[1], BatchNormStep)
    assert max(gradcheck(net, batch_size=batch).values()) < 1e-6


def test_batch_norm_step_keeps_float32():
    net = bn_net((6, 5, 3), Activation("relu"), dtype="float32")
    x = np.random.default_rng(3).standard_normal((4, 6, 5, 3)).astype(np.float32)
    start = network_state(net)
    y, dx, grads, state = passes(net, x, True, True)
    assert y.dtype == dx.dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads.values())
    assert all(v.dtype == np.float32 for v in state.values())
    restore(net, start)  # the reference layer from the same state: equal within float32 rounding
    reference = passes(net, x, False, True)
    for fast, ref in [(y, reference[0]), (dx, reference[1]), *zip(grads.values(), reference[2].values()),
                      *zip(state.values(), reference[3].values())]:
        np.testing.assert_allclose(fast, ref, rtol=1e-4, atol=1e-4 * max(np.abs(ref).max(), 1e-30))


def test_the_planner_chooses_the_batch_norm_step_only_where_it_applies():
    def kinds(layers, options=None):
        net = Net(input_shape=(4, 4, 3), layers=layers)
        return [(type(step).__name__, len(getattr(step, "layers", [step])))
                for step in plan(net.layers, options).steps]

    bn = BatchNormalization
    assert kinds([bn(), ReLU()]) == [("BatchNormStep", 2)]
    assert kinds([bn(), Activation("relu")]) == [("BatchNormStep", 2)]
    # Only a plain ReLU joins the step; others, and a ReLU with an activity penalty, run themselves.
    assert kinds([bn(), LeakyReLU()]) == [("BatchNormStep", 1), ("LeakyReLU", 1)]
    assert kinds([bn(), ReLU(max_value=6)]) == [("BatchNormStep", 1), ("ReLU", 1)]
    assert kinds([bn(), Activation("relu", activity_regularizer="l2")]) == [
        ("BatchNormStep", 1), ("Activation", 1)]
    # Statistics over another axis than the last: the layer's own passes.
    assert kinds([bn(axis=1), ReLU()]) == [("BatchNormalization", 1), ("ReLU", 1)]
    reference = modularcnn.ExecutionOptions(fused=False)
    assert kinds([bn(), ReLU()], reference) == [("BatchNormalization", 1), ("ReLU", 1)]


def test_reference_kernels_and_fusion_off_run_the_layer():
    net = bn_net((6, 5, 3), Activation("relu"))
    assert "BatchNormStep" in net.plan().kinds()
    assert "batch_norm_relu" in str(net.plan())
    with modularcnn.reference_kernels():
        assert "BatchNormStep" not in net.plan().kinds()
    net.fusion = False
    assert net.plan().kinds()[1:3] == ["BatchNormalization", "Activation"]


def test_the_first_layer_skips_its_input_gradient():
    net = Net(input_shape=(4, 3), dtype="float64", layers=[BatchNormalization(), Flatten(),
                                                          Dense(2, activation="softmax")])
    x = np.random.default_rng(0).standard_normal((5, 4, 3))
    y = net.forward(x, training=True)
    assert net.backward(np.ones_like(y), input_gradient=False) is None
    grads = dict(net.layers[0].grads)
    net.fusion = False
    net.forward(x, training=True)
    net.backward(np.ones_like(y), input_gradient=False)
    for key, value in grads.items():
        np.testing.assert_allclose(value, net.layers[0].grads[key], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("rows, features, k", [(6272, 32, 64), (6, 32, 2), (7, 3, 1), (64, 4096, 1),
                                               (96, 5, 32)])
def test_wide_rows_views_rows_as_at_most_wide_row_values(rows, features, k):
    a = np.arange(rows * features, dtype=np.float64).reshape(rows, features)
    wide, got = batch_norm.wide_rows(a)
    assert got == k and wide.shape == (rows // k, k * features)
    assert np.shares_memory(wide, a)
    v = np.arange(features, dtype=np.float64)
    np.testing.assert_array_equal((wide - batch_norm.tiled(v, k)).reshape(rows, features), a - v)


def test_synchronised_batch_norm_step_with_two_workers_matches_one_process():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((48, 7, 5, 3)) * 2 + 1, rng.integers(0, 3, 48)
    results = []
    for workers, fused in ((1, False), (1, True), (2, True)):
        net = bn_net((7, 5, 3), ReLU(), seed=4)
        net.fusion = fused
        net.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        net.fit(x, y, epochs=2, batch_size=12, verbose=0, workers=workers, shuffle=False)
        results.append(net.get_weights())
        if workers == 2:
            from modularcnn.training.strategies import pool_of

            assert all("BatchNormStep" in kinds for kinds in pool_of(net).plans())
            strategies.close_pool(net)
    reference, fused_one, fused_two = results
    for a, b, c in zip(reference, fused_one, fused_two):   # moving statistics included
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(c, b, rtol=1e-7, atol=1e-9)


POOLS = {1: AveragePooling1D, 2: AveragePooling, 3: AveragePooling3D}


def pool_net(shape, pool_size, dtype="float64"):
    """A dense layer shaped into ``shape`` (so the pool is not first), the pool, a dense head."""
    net = Net(input_shape=(4,), dtype=dtype, seed=0)
    net.add(Dense(int(np.prod(shape))))
    net.add(Reshape(shape))
    net.add(POOLS[len(shape) - 1](pool_size))
    net.add(Flatten())
    net.add(Dense(3, activation="softmax"))
    return net


@pytest.mark.parametrize("shape, pool_size, batch", [
    ((9, 7, 3), 2, 3),         # odd sizes: the last row and column belong to no window
    ((8, 6, 5), (2, 3), 1),    # non-square windows, batch 1
    ((10, 9, 11), 3, 2),       # 11 channels: the window-slice path
    ((12, 12, 6), 4, 2),
    ((7, 4), 2, 2),            # 1-D
    ((7, 9), 3, 1),            # 1-D, 9 channels
    ((5, 6, 7, 3), (2, 3, 2), 2),  # 3-D
    ((4, 6, 5, 9), 2, 1),      # 3-D, 9 channels
])
def test_average_pool_step_matches_the_layer(shape, pool_size, batch):
    net = pool_net(shape, pool_size)
    assert isinstance(net.plan().steps[2], AveragePoolStep)
    x = np.random.default_rng(1).standard_normal((batch, 4))
    assert_same_passes(net, x)
    for channels in (1, 5, 9):   # both paths of the kernels, directly, against the reference kernels
        data = np.random.default_rng(2).standard_normal((batch, *shape[:-1], channels))
        layer = POOLS[len(shape) - 1](pool_size)
        layer.build(data.shape[1:])
        y = layer.forward(data)
        dy = np.random.default_rng(3).standard_normal(y.shape)
        np.testing.assert_allclose(pooling.tiled_avg_pool_forward(data, layer.pool_size), y,
                                   rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(pooling.tiled_avg_pool_backward(dy, data.shape, layer.pool_size),
                                   layer.backward(dy), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("shape, pool_size, batch", [((7, 5, 3), 2, 1), ((9, 8, 1), (3, 2), 2),
                                                     ((6, 7, 10), 3, 1), ((7, 3), 2, 2)])
def test_average_pool_step_passes_the_gradient_check(shape, pool_size, batch):
    net = pool_net(shape, pool_size)
    assert isinstance(net.plan().steps[2], AveragePoolStep)
    assert max(gradcheck(net, batch_size=batch).values()) < 1e-6


def test_the_planner_chooses_the_average_pool_step_only_for_tiling_windows():
    def kind(pool, shape=(8, 6, 3), options=None):
        net = Net(input_shape=shape, layers=[pool])
        return type((plan(net.layers, options) if options else net.plan()).steps[0]).__name__

    assert kind(AveragePooling(2)) == "AveragePoolStep"
    assert "tiled_avg_pool" in str(Net(input_shape=(4, 4, 1), layers=[AveragePooling(2)]).plan())
    assert kind(AveragePooling(2, padding="same")) == "AveragePoolStep"   # 8 x 6: no padding needed
    assert kind(AveragePooling(3, padding="same")) == "AveragePooling"    # padded windows
    assert kind(AveragePooling(3, strides=2)) == "AveragePooling"         # overlapping windows
    assert kind(AveragePooling(2), options=modularcnn.ExecutionOptions(fused=False)) == "AveragePooling"
    with modularcnn.reference_kernels():
        assert kind(AveragePooling(2)) == "AveragePooling"


def test_average_pool_step_keeps_float32_and_skips_a_first_layers_input_gradient():
    net = Net(input_shape=(6, 6, 2), layers=[AveragePooling(2), Flatten(), Dense(2, activation="softmax")])
    x = np.random.default_rng(0).standard_normal((3, 6, 6, 2)).astype(np.float32)
    y = net.forward(x, training=True)
    assert net.layers[0].output_shape == (3, 3, 2)
    assert net.backward(np.ones_like(y), input_gradient=False) is None
    assert net.backward(np.ones_like(y)).dtype == np.float32


def residual_net(shape, filters, stride=1, dtype="float64", seed=0):
    """conv - BN - ReLU, then a residual block conv - BN - ReLU - conv - BN (a projection shortcut
    when ``filters`` or ``stride`` change the shape), ReLU, a dense head."""
    net = Net(input_shape=shape, dtype=dtype, seed=seed)
    net.add(Convolutional(3, 3, pad=1, use_bias=False))
    net.add(BatchNormalization(momentum=0.8))
    net.add(ReLU())
    net.add(Residual([Convolutional(filters, 3, pad=1, stride=stride, use_bias=False),
                      BatchNormalization(momentum=0.7), Activation("relu"),
                      Convolutional(filters, (3, 2), pad="same", use_bias=False),
                      BatchNormalization(momentum=0.9)]))
    net.add(ReLU())
    net.add(Flatten())
    net.add(Dense(3, activation="softmax"))
    return net


@pytest.mark.parametrize("shape, filters, stride, batch", [((7, 5, 2), 3, 1, 3),   # identity shortcut
                                                           ((8, 7, 1), 5, 2, 2),   # projection, stride 2
                                                           ((9, 6, 3), 4, 3, 1)])  # stride 3, batch 1
def test_a_residual_block_runs_its_batch_norm_steps_like_the_layer(shape, filters, stride, batch):
    net = residual_net(shape, filters, stride)
    randomise(net)
    residual = net.layers[3]
    for layer in residual.block + residual.shortcut_layers:
        if isinstance(layer, BatchNormalization):
            layer.params["gamma"][...] = np.linspace(0.6, 1.4, layer.params["gamma"].size)
    step = net.plan().steps[2]
    assert isinstance(step, PlannedResidual) and step.layers == (residual,)
    assert [type(s).__name__ for s in step.steps[0]] == [
        "Convolutional", "BatchNormStep", "Convolutional", "BatchNormStep"]
    assert "block: Convolutional, BatchNormStep" in str(net.plan())
    assert_same_passes(net, np.random.default_rng(1).standard_normal((batch,) + shape) * 2 + 1)
    assert max(gradcheck(net, batch_size=batch).values()) < 1e-6


def test_a_frozen_residual_block_with_fast_steps_runs_its_batch_norms_in_inference_mode():
    net = residual_net((6, 5, 2), 3)
    randomise(net)
    residual = net.layers[3]
    residual.trainable = False
    assert isinstance(net.plan().steps[2], PlannedResidual)
    inner = [layer for layer in residual.block if isinstance(layer, BatchNormalization)]
    before = [layer.params["moving_mean"].copy() for layer in inner]
    x = np.random.default_rng(3).standard_normal((4, 6, 5, 2))
    assert_same_passes(net, x)
    passes(net, x, True, True)
    for layer, mean in zip(inner, before):
        np.testing.assert_array_equal(layer.params["moving_mean"], mean)
    # The batch norm outside the block still trains.
    assert not np.array_equal(net.layers[1].params["moving_mean"], network_state(
        residual_net((6, 5, 2), 3))[f"{net.layers[1].name}/moving_mean"])


def test_a_residual_block_without_fast_steps_runs_itself():
    net = Net(input_shape=(5, 4, 2), layers=[Residual([Convolutional(2, 3, pad=1)]), Flatten()])
    assert isinstance(net.plan().steps[0], Residual)
    net = residual_net((5, 4, 2), 2)
    net.fusion = False
    assert isinstance(net.plan().steps[3], Residual)
    with modularcnn.reference_kernels():
        assert not any(isinstance(s, PlannedResidual) for s in residual_net((5, 4, 2), 2).plan().steps)


def test_a_residual_block_with_fast_steps_trains_with_two_workers_like_one_process():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((24, 6, 5, 2)) * 2 + 1, rng.integers(0, 3, 24)
    results = []
    for workers, fused in ((1, False), (2, True)):
        net = residual_net((6, 5, 2), 4, stride=2, seed=4)
        net.fusion = fused
        net.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        net.fit(x, y, epochs=2, batch_size=8, verbose=0, workers=workers, shuffle=False)
        results.append(net.get_weights())
        if workers == 2:
            strategies.close_pool(net)
    for a, b in zip(*results):   # moving statistics included
        np.testing.assert_allclose(b, a, rtol=1e-7, atol=1e-9)
