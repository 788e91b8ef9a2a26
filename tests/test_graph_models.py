"""Graph models (Model): merge layers, shared layers, several inputs and outputs, validation, fusion
inside chains, nesting, Residual as a graph, summary. Gradients against centred finite differences in
float64 on odd shapes; training, saving and strategies are in tests/test_graph_training.py."""

import numpy as np
import pytest

import modularcnn as mc
from modularcnn import Input, Model, Net
from modularcnn.errors import ModelFileError, ShapeError
from modularcnn.gradcheck import numerical_gradient, relative_error
from modularcnn.graph_execution import _steps
from modularcnn.layers import (
    Add,
    Average,
    BatchNormalization,
    Concatenate,
    Conv2D,
    Dense,
    Dot,
    Flatten,
    Maximum,
    MaxPooling2D,
    Minimum,
    Multiply,
    Residual,
    Subtract,
)

F64 = "float64"


def model_gradcheck(model, xs, seed=0, tolerance=1e-6, check_inputs=True):
    """Relative errors of ``model.backward`` against finite differences of ``sum_k sum(r_k * y_k)``.

    ``xs`` is one array per input; every input gradient and every trainable parameter is checked.
    """
    rng = np.random.default_rng(seed)
    xs = [np.array(x, dtype=np.float64) for x in xs]
    feed = xs if len(xs) > 1 else xs[0]

    def outputs():
        out = model.forward(feed, training=True)
        return out if isinstance(out, list) else [out]

    rs = [rng.standard_normal(y.shape) for y in outputs()]

    def loss():
        return float(sum(np.sum(y * r) for y, r in zip(outputs(), rs)))

    outputs()
    dx = model.backward([r.copy() for r in rs] if len(rs) > 1 else rs[0].copy())
    dx = dx if isinstance(dx, list) else [dx]
    analytic = {f"{layer.name}/{key}": np.array(layer.grads[key])
                for layer in model.layers for key in layer.trainable_params}
    errors = {}
    if check_inputs:
        for k, (x, g) in enumerate(zip(xs, dx)):
            errors[f"input{k}"] = relative_error(g, numerical_gradient(loss, x))
    for layer in model.layers:
        for key, value in layer.trainable_params.items():
            name = f"{layer.name}/{key}"
            errors[name] = relative_error(analytic[name], numerical_gradient(loss, value))
    bad = {k: v for k, v in errors.items() if not v < tolerance}
    assert not bad, f"backward disagrees with finite differences: {bad}"
    return errors


def two_input_model(merge, shape_a=(3, 5), shape_b=(3, 5)):
    a, b = Input(shape_a, dtype=F64, name="a"), Input(shape_b, dtype=F64, name="b")
    # Dense layers before the merge: the merge's gradients must also reach weights.
    ha = Dense(shape_a[-1], activation="tanh")(a)
    hb = Dense(shape_b[-1], activation="tanh")(b)
    return Model([a, b], merge([ha, hb]))


# ------------------------------------------------------------------------------------------------
# Merge layers
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("merge", [Add, Subtract, Multiply, Average, Maximum, Minimum],
                         ids=lambda c: c.__name__)
@pytest.mark.parametrize("batch", [1, 3])
def test_elementwise_merges_match_finite_differences(merge, batch):
    model = two_input_model(merge())
    rng = np.random.default_rng(batch)
    model_gradcheck(model, [rng.normal(size=(batch, 3, 5)), rng.normal(size=(batch, 3, 5))])


def test_elementwise_merges_compute_what_numpy_does():
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(2, 4, 3)) for _ in range(3)]
    expected = {Add: xs[0] + xs[1] + xs[2], Multiply: xs[0] * xs[1] * xs[2],
                Average: (xs[0] + xs[1] + xs[2]) / 3, Maximum: np.maximum(np.maximum(xs[0], xs[1]), xs[2]),
                Minimum: np.minimum(np.minimum(xs[0], xs[1]), xs[2])}
    for cls, value in expected.items():
        np.testing.assert_allclose(cls()(xs), value, rtol=1e-12)
    np.testing.assert_allclose(Subtract()(xs[:2]), xs[0] - xs[1])
    with pytest.raises(ShapeError, match="exactly 2"):
        Subtract()([Input((3,)), Input((3,)), Input((3,))])


def test_three_way_merges_and_broadcasting_match_finite_differences():
    rng = np.random.default_rng(1)
    a, b, c = Input((3, 4, 2), dtype=F64), Input((1, 1, 2), dtype=F64), Input((3, 1, 2), dtype=F64)
    y1 = Multiply()([Dense(2)(a), b, c])     # (3, 4, 2) * (1, 1, 2) * (3, 1, 2)
    y2 = Maximum()([a, Dense(2)(c), b])
    model = Model([a, b, c], [y1, Add()([y2, b])])
    assert model.output_shapes == [(3, 4, 2), (3, 4, 2)]
    model_gradcheck(model, [rng.normal(size=(2, 3, 4, 2)), rng.normal(size=(2, 1, 1, 2)),
                            rng.normal(size=(2, 3, 1, 2))])


def test_merge_shape_errors_name_the_layer_and_shapes():
    with pytest.raises(ShapeError, match=r"add_bad.*\(None, 3\).*\(None, 4\)"):
        Add(name="add_bad")([Input((3,)), Input((4,))])
    with pytest.raises(ShapeError, match="different ranks"):
        Add()([Input((3,)), Input((2, 3))])
    with pytest.raises(ShapeError, match="list of input tensors"):
        Add()(Input((3,)))
    with pytest.raises(ShapeError, match="axis other than"):
        Concatenate(axis=1)([Input((3, 2)), Input((4, 5))])
    with pytest.raises(ShapeError, match="batch axis"):
        Concatenate(axis=0)([Input((3,)), Input((3,))])
    with pytest.raises(ShapeError, match="contract"):
        Dot(axes=1)([Input((3,)), Input((4,))])


@pytest.mark.parametrize("axis", [-1, 1, 2])
def test_concatenate_matches_numpy_and_finite_differences(axis):
    shapes = {-1: ((3, 2), (3, 4)), 1: ((2, 4), (1, 4)), 2: ((3, 1), (3, 3))}[axis]
    model = two_input_model(Concatenate(axis=axis), *shapes)
    rng = np.random.default_rng(2)
    xs = [rng.normal(size=(2,) + s) for s in shapes]
    model_gradcheck(model, xs)
    merged = Concatenate(axis=axis)(xs)
    np.testing.assert_array_equal(merged, np.concatenate(xs, axis=axis))


@pytest.mark.parametrize("axes, shapes, expected", [
    (1, ((5,), (5,)), (1,)),
    ((2, 1), ((3, 4), (4, 2)), (3, 2)),
    ((1, 2), ((4, 3), (2, 4)), (3, 2)),
    (-1, ((2, 3), (3,)), (2,)),
])
@pytest.mark.parametrize("normalize", [False, True])
def test_dot_matches_einsum_and_finite_differences(axes, shapes, expected, normalize):
    model = two_input_model(Dot(axes=axes, normalize=normalize), *shapes)
    assert model.output_shape == expected
    rng = np.random.default_rng(3)
    xs = [rng.normal(size=(3,) + s) for s in shapes]
    model_gradcheck(model, xs)
    # The forward pass against an explicit formula (Keras's batch_dot).
    dot = Dot(axes=axes, normalize=normalize)
    pair = axes if isinstance(axes, tuple) else (axes, axes)
    a1, a2 = [p % (len(s) + 1) for p, s in zip(pair, shapes)]
    u, v = np.moveaxis(xs[0], a1, -1), np.moveaxis(xs[1], a2, -1)
    if normalize:
        u = u / np.linalg.norm(u, axis=-1, keepdims=True)
        v = v / np.linalg.norm(v, axis=-1, keepdims=True)
    want = np.einsum("n...d,nd->n...", u, v) if v.ndim == 2 and u.ndim > 2 else \
        np.einsum("nid,njd->nij", u.reshape(3, -1, u.shape[-1]), v.reshape(3, -1, v.shape[-1]))
    np.testing.assert_allclose(dot(xs).reshape(3, -1), want.reshape(3, -1), rtol=1e-10)


# ------------------------------------------------------------------------------------------------
# Graphs: shared layers, several inputs and outputs, odd shapes
# ------------------------------------------------------------------------------------------------

def shared_two_in_two_out():
    """Two image inputs through one shared strided conv, merged; two heads (softmax and linear)."""
    img_a, img_b = Input((7, 6, 2), dtype=F64, name="img_a"), Input((7, 6, 2), dtype=F64, name="img_b")
    shared = Conv2D(3, 3, strides=2, padding="same", activation="tanh", name="shared_conv")
    fa, fb = shared(img_a), shared(img_b)               # (4, 3, 3) each
    both = Concatenate()([fa, fb])                      # (4, 3, 6)
    h = Conv2D(4, (2, 3), padding="valid", activation="relu")(both)  # (3, 1, 4)
    h = BatchNormalization()(h)
    flat = Flatten()(h)
    cls = Dense(3, activation="softmax", name="cls")(flat)
    diff = Flatten()(Subtract()([fa, fb]))
    reg = Dense(2, name="reg")(Add()([Dense(2)(diff), Dense(2)(flat)]))
    return Model([img_a, img_b], [cls, reg], name="twins")


@pytest.mark.parametrize("batch", [1, 3])
def test_shared_layers_two_inputs_two_outputs_match_finite_differences(batch):
    model = shared_two_in_two_out()
    assert model.graph.is_shared(model.get_layer("shared_conv"))
    rng = np.random.default_rng(batch)
    errors = model_gradcheck(model, [rng.normal(size=(batch, 7, 6, 2)), rng.normal(size=(batch, 7, 6, 2))])
    assert "shared_conv/kernel" in errors and "input1" in errors


def test_a_shared_layer_gradient_is_the_sum_over_its_calls():
    x = Input((4,), dtype=F64)
    dense = Dense(4, activation="tanh")
    model = Model(x, dense(dense(dense(x))))  # y = f(f(f(x))): three calls, one kernel
    rng = np.random.default_rng(0)
    model_gradcheck(model, [rng.normal(size=(2, 4))])
    # The same kernel in a Net of three copies sharing the arrays gives the same total gradient.
    net = Net(input_shape=(4,), dtype=F64, layers=[Dense(4, activation="tanh") for _ in range(3)])
    for layer in net.layers:
        layer.params = dense.params
    xin = rng.normal(size=(2, 4))
    np.testing.assert_array_equal(net.forward(xin, training=True), model.forward(xin, training=True))
    g = rng.normal(size=(2, 4))
    net.backward(g)
    model.backward(g)
    total = sum(layer.grads["kernel"] for layer in net.layers)
    np.testing.assert_allclose(dense.grads["kernel"], total, rtol=1e-12)


def test_an_input_can_also_be_an_output_and_a_tensor_can_feed_several_layers():
    x = Input((3,), dtype=F64)
    h = Dense(3)(x)
    model = Model(x, [x, Add()([h, x]), Dense(2)(h)])
    rng = np.random.default_rng(4)
    model_gradcheck(model, [rng.normal(size=(2, 3))])


def test_backward_without_input_gradient_returns_none_for_inputs():
    model = shared_two_in_two_out()
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(2, 7, 6, 2)) for _ in range(2)]
    ys = model.forward(xs, training=True)
    assert model.backward([np.ones_like(y) for y in ys], input_gradient=False) == [None, None]
    assert all(layer.grads.get("kernel") is not None for layer in model.layers if "kernel" in layer.params)


# ------------------------------------------------------------------------------------------------
# Validation
# ------------------------------------------------------------------------------------------------

def test_model_validation_errors():
    a, b = Input((3,), name="a"), Input((3,), name="b")
    y = Dense(2)(Add()([a, b]))
    with pytest.raises(ValueError, match="graph disconnected.*'b'"):
        Model(a, y)
    with pytest.raises(ValueError, match="not connected to any output"):
        Model([a, b, Input((3,), name="c")], y)
    with pytest.raises(ValueError, match="must be an Input"):
        Model(Dense(3)(a), y)
    with pytest.raises(ValueError, match="twice"):
        Model([a, a, b], y)
    with pytest.raises(ValueError, match="two different layers are named 'same'"):
        Model(a, Dense(2, name="same")(Dense(3, name="same")(a)))
    with pytest.raises(ValueError, match="symbolic tensor"):
        Model(a, np.ones(3))
    block = Residual([Dense(3)])
    with pytest.raises(ValueError, match="holds other layers and is called 2 times"):
        Model(a, block(block(a)))
    with pytest.raises(ValueError, match="a Model is built from Input"):
        Model(a, Dense(1)(a)).add(Dense(2))


def test_incompatible_shared_layer_fails_at_the_call():
    x = Input((5,))
    dense = Dense(2, name="twice")
    dense(x)
    with pytest.raises(ShapeError, match=r"twice.*\(None, 5\).*\(None, 3\)"):
        dense(Input((3,)))


def _config_with_cycle():
    x = Input((3,), name="x")
    model = Model(x, Dense(3, name="d2")(Dense(3, name="d1")(x)))
    config = model.get_config()
    # d1 now takes d2's output: d1 -> d2 -> d1.
    entry = next(e for e in config["layers"] if e["name"] == "d1")
    entry["inbound_nodes"] = [[["d2", 0, 0]]]
    return config


def test_from_config_refuses_cycles_and_dangling_references():
    with pytest.raises(ModelFileError, match="cycle"):
        Model.from_config(_config_with_cycle())
    x = Input((3,), name="x")
    config = Model(x, Dense(3, name="d")(x)).get_config()
    config["layers"][1]["inbound_nodes"] = [[["nowhere", 0, 0]]]
    with pytest.raises(ModelFileError, match="unknown layer 'nowhere'"):
        Model.from_config(config)
    config["layers"][1]["inbound_nodes"] = [[["x", 0, 1]]]
    with pytest.raises(ModelFileError, match="tensor index"):
        Model.from_config(config)


# ------------------------------------------------------------------------------------------------
# Execution: memory, fusion in chains
# ------------------------------------------------------------------------------------------------

def test_each_tensor_is_dropped_after_its_last_consumer():
    model = shared_two_in_two_out()
    steps = _steps(model.graph)
    freed = [id(t) for step in steps for t in step.frees]
    assert len(freed) == len(set(freed))
    output_ids = {id(t) for t in model.outputs}
    read = {id(t) for step in steps for t in step.inputs}
    assert set(freed) == read - output_ids
    for index, step in enumerate(steps):  # nothing reads a freed tensor later
        for later in steps[index + 1:]:
            assert not {id(t) for t in step.frees} & {id(t) for t in later.inputs}


def conv_pool_graph(dtype=F64):
    x = Input((8, 8, 2), dtype=dtype)
    a = MaxPooling2D(2)(Conv2D(4, 3, padding="same", activation="relu")(x))        # fusable chain
    b = MaxPooling2D(2)(Conv2D(4, 3, padding="same", activation="relu")(Conv2D(3, 1)(x)))
    return Model(x, Dense(3, activation="softmax")(Flatten()(Concatenate()([a, b]))))


def test_fusion_inside_chains_gives_the_reference_numbers():
    model = conv_pool_graph()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 8, 8, 2))
    g = rng.normal(size=(3, 3))
    results = {}
    for fused in (True, False):
        model.fusion = fused
        y = model.forward(x, training=True)
        dx = model.backward(g)
        kinds = [type(part).__name__ for plan in model._executor._plans if plan for part in plan]
        results[fused] = (y, dx, {k: v.copy() for k, v in model.trainable_grads().items()}, kinds)
    assert any("ConvReluPool" in kind for kind in results[True][3])
    assert not any("ConvReluPool" in kind for kind in results[False][3])
    np.testing.assert_allclose(results[True][0], results[False][0], rtol=1e-12)
    np.testing.assert_allclose(results[True][1], results[False][1], rtol=1e-10, atol=1e-14)
    for key, value in results[False][2].items():
        np.testing.assert_allclose(results[True][2][key], value, rtol=1e-10, atol=1e-14)
    model.fusion = True
    model_gradcheck(model, [x])
    # The plan shows each chain's steps; a reference_kernels() block runs none fused.
    assert "ConvReluPool" in " ".join(model.plan().kinds())
    with mc.reference_kernels():
        model.forward(x)
        assert not any("ConvReluPool" in kind for kind in model._plan.kinds())
        assert not any("ConvReluPool" in kind for kind in model.plan().kinds())
    lines = []
    model.summary(print_fn=lines.append, show_plan=True)
    assert "Execution plan" in lines[0]


# ------------------------------------------------------------------------------------------------
# Residual as a graph, nesting
# ------------------------------------------------------------------------------------------------

def test_residual_written_as_a_graph_gives_the_residual_layer_numbers():
    mc.utils.set_random_seed(0)
    block = [Conv2D(4, 3, strides=2, padding="same", activation="relu"), BatchNormalization(),
             Conv2D(4, 3, padding="same")]
    net = Net(input_shape=(7, 7, 3), dtype=F64, seed=1,
              layers=[Residual(block, shortcut="projection_bn"), Flatten(), Dense(2)])
    residual = net.layers[0]
    x = Input((7, 7, 3), dtype=F64)
    c1, bn, c2 = (Conv2D(4, 3, strides=2, padding="same", activation="relu"), BatchNormalization(),
                  Conv2D(4, 3, padding="same"))
    sc, sbn = Conv2D(4, 1, strides=2, use_bias=False), BatchNormalization()
    y = Add()([c2(bn(c1(x))), sbn(sc(x))])
    dense = Dense(2)
    model = Model(x, dense(Flatten()(y)))
    for ours, theirs in zip([c1, bn, c2, sc, sbn], residual.sublayers):
        for key in ours.params:
            ours.params[key][...] = theirs.params[key]
    dense.params["kernel"][...] = net.layers[2].params["kernel"]
    dense.params["bias"][...] = net.layers[2].params["bias"]
    rng = np.random.default_rng(2)
    x_batch = rng.normal(size=(3, 7, 7, 3))
    np.testing.assert_array_equal(model.forward(x_batch, training=True), net.forward(x_batch, training=True))
    g = rng.normal(size=(3, 2))
    np.testing.assert_allclose(model.backward(g), net.backward(g), rtol=1e-13, atol=1e-15)
    for ours, theirs in zip([c1, bn, c2, sc, sbn], residual.sublayers):
        for key in ours.trainable_params:
            np.testing.assert_allclose(ours.grads[key], theirs.grads[key], rtol=1e-13, atol=1e-15)
    # And after training steps with the same optimizer, the same weights.
    for network in (net, model):
        network.compile(optimizer="sgd", loss="mse", metrics=[])
        network.fit(x_batch, g, epochs=3, batch_size=3, verbose=0, workers=1)
    np.testing.assert_allclose(model.predict(x_batch), net.predict(x_batch), rtol=1e-12)


def test_a_net_inside_a_model_and_a_model_inside_a_net():
    mc.utils.set_random_seed(3)
    encoder = Net(input_shape=(6, 6, 1), dtype=F64, name="encoder",
                  layers=[Conv2D(2, 3, activation="tanh"), Flatten()])
    a, b = Input((6, 6, 1), dtype=F64), Input((6, 6, 1), dtype=F64)
    head = Dense(2)(Concatenate()([encoder(a), Dense(4)(Flatten()(b))]))
    model = Model([a, b], head, name="pair")
    assert any(getattr(layer, "model", None) is encoder for layer in model.layers)
    rng = np.random.default_rng(5)
    model_gradcheck(model, [rng.normal(size=(2, 6, 6, 1)), rng.normal(size=(2, 6, 6, 1))])
    # A Model inside a Net.
    x = Input((5,), dtype=F64)
    block = Model(x, Add()([Dense(5, activation="tanh")(x), x]), name="block")
    net = Net(input_shape=(5,), dtype=F64, layers=[Dense(5), block, Dense(3)])
    assert any(key.startswith("block/dense") for key in net.trainable_params())
    mc.gradcheck(net, batch_size=2)
    model.summary(print_fn=lambda text: None)


def test_calling_a_net_on_arrays_computes():
    net = Net(input_shape=(3,), layers=[Dense(2)])
    x = np.ones((4, 3), dtype=np.float32)
    np.testing.assert_array_equal(net(x), net.predict(x))


# ------------------------------------------------------------------------------------------------
# Summary
# ------------------------------------------------------------------------------------------------

def test_summary_has_a_connected_to_column():
    model = shared_two_in_two_out()
    lines = []
    model.summary(print_fn=lines.append)
    text = lines[0]
    assert "Connected to" in text
    row = next(line for line in text.splitlines() if line.startswith("shared_conv"))
    assert "img_a[0][0], img_b[0][0]" in row
    row = next(line for line in text.splitlines() if line.startswith("subtract"))
    assert "shared_conv[0][0], shared_conv[1][0]" in row
    assert 'Model: "twins"  inputs: (None, 7, 6, 2), (None, 7, 6, 2)' in text
    assert f"Total params: {model.count_params():,}" in text


def test_predict_returns_the_structure_of_the_outputs():
    x = Input((3,), name="x")
    model = Model({"x": x}, {"first": Dense(2)(x), "second": Dense(1)(x)})
    out = model.predict({"x": np.ones((4, 3))})
    assert sorted(out) == ["first", "second"] and out["second"].shape == (4, 1)
    listed = Model(x, [Dense(2)(x), Dense(1)(x)]).predict(np.ones((4, 3)))
    assert isinstance(listed, list) and [o.shape for o in listed] == [(4, 2), (4, 1)]
    with pytest.raises(ValueError, match="missing"):
        model.predict({"y": np.ones((4, 3))})
