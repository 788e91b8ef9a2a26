"""ONNX export: every layer type exports, and onnxruntime's outputs match ``predict`` to 1e-5
(onnx and onnxruntime are optional; the tests skip cleanly without them)."""

import builtins
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from modularcnn import Net
from modularcnn.layers import (ELU, Activation, AveragePooling1D, AveragePooling2D, AveragePooling3D,
                               BatchNormalization, Conv1D, Conv1DTranspose, Conv2D, Conv2DTranspose,
                               Conv3D, Conv3DTranspose, Convolutional, Dense, Dropout, Flatten,
                               GlobalAveragePooling2D, GlobalMaxPooling2D, MaxPooling, MaxPooling1D,
                               MaxPooling3D, Reshape, Residual, UpSampling1D, UpSampling2D,
                               UpSampling3D, registered_layers)
from modularcnn.layers import (AvgPool2D, Cropping1D, Cropping2D, Cropping3D, DepthwiseConv1D,
                               DepthwiseConv2D, GaussianDropout, GaussianNoise, GlobalAveragePooling1D,
                               GlobalAveragePooling3D, GlobalMaxPooling1D, GlobalMaxPooling3D,
                               GroupNormalization, LayerNormalization, LeakyReLU, MaxPool1D, Permute, PReLU,
                               ReLU, Rescaling, SeparableConv1D, SeparableConv2D, Softmax, SpatialDropout1D,
                               SpatialDropout2D, SpatialDropout3D, ZeroPadding1D, ZeroPadding2D,
                               ZeroPadding3D)
from modularcnn import activations

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def randomised(net, seed=0):
    """Random weights and positive batch-norm variances, so every array's layout matters."""
    rng = np.random.default_rng(seed)
    for layer in net.layers:
        for key, value in layer.params.items():
            fresh = rng.uniform(0.5, 1.5, value.shape) if key.endswith("variance") \
                else rng.normal(0, 0.5, value.shape)
            value[...] = fresh
    return net


def run_onnx(net, x, tmp_path):
    path = net.export_onnx(tmp_path / "model.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x.astype(net.dtype)})[0]


def check(net, tmp_path, batches=(1, 5)):
    randomised(net)
    rng = np.random.default_rng(1)
    for batch in batches:
        x = rng.normal(size=(batch, *net.input_shape)).astype("float32")
        expected = net.predict(x)
        got = run_onnx(net, x, tmp_path)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * max(1, np.abs(expected).max()))


NETWORKS = {
    "seed_style_cnn": lambda: [
        Convolutional(input_shape=(11, 9, 3), filters=4, filter_size=3, stride=1, pad=1,
                      activation="relu"),
        MaxPooling(pool_size=2), Convolutional(filters=5, filter_size=2, stride=2, pad=(1, 0),
                                               activation="tanh"),
        Flatten(), Dropout(0.5), Dense(6, activation="sigmoid"), Dense(3, activation="softmax")],
    "same_and_pools": lambda: [
        Conv2D(3, (3, 2), strides=(2, 3), padding="same", activation="leakyrelu", alpha=0.2,
               input_shape=(10, 13, 2)),
        AveragePooling2D(3, strides=2, padding="same"), BatchNormalization(),
        Activation("elu", alpha=0.7), MaxPooling(pool_size=(2, 1), padding="same"),
        GlobalMaxPooling2D(), Dense(4)],
    "global_average_softmax_layer": lambda: [
        Conv2D(4, 1, input_shape=(5, 6, 3)), Activation("softmax"), GlobalAveragePooling2D(),
        BatchNormalization(), Dense(2)],
    "transposed": lambda: [
        Conv2DTranspose(3, 3, strides=2, padding="same", activation="relu", input_shape=(4, 5, 2)),
        Conv2DTranspose(2, 1, strides=3, padding="valid"),  # kernel < stride: output_padding
        Conv2DTranspose(2, 3, strides=2, padding=1), UpSampling2D((2, 1)), Flatten(), Dense(3)],
    "rank1": lambda: [
        Conv1D(3, 3, padding="same", activation="relu", input_shape=(17, 2)), MaxPooling1D(2),
        Conv1DTranspose(2, 3, strides=2, padding="same"), UpSampling1D(3), AveragePooling1D(2),
        BatchNormalization(), Flatten(), Dense(2, activation="softmax")],
    "rank3": lambda: [
        Conv3D(2, 2, padding="same", input_shape=(5, 4, 6, 2)), MaxPooling3D(2, padding="same"),
        Conv3DTranspose(2, 2, strides=2), UpSampling3D((1, 2, 1)), AveragePooling3D(2),
        Flatten(), Dense(3)],
    "reshape_and_channels_last_batch_norm": lambda: [
        Dense(24, input_shape=(6,)), Reshape((2, 3, 4)), BatchNormalization(), Conv2D(3, 2),
        Reshape((-1,)), Dense(2)],
    "dense_on_images": lambda: [
        Conv2D(3, 3, input_shape=(6, 5, 2)), Dense(4, activation="tanh"), Flatten(), Dense(2)],
    "residual": lambda: [
        Conv2D(4, 3, padding="same", input_shape=(8, 8, 3)),
        Residual([Conv2D(4, 3, padding="same"), BatchNormalization(), Activation("relu"),
                  Conv2D(4, 3, padding="same")]),
        Activation("relu"),
        Residual([Conv2D(6, 3, strides=2, padding="same")], shortcut="projection_bn"),
        GlobalAveragePooling2D(), Dense(3)],
    "dilated_grouped_and_pad_value": lambda: [
        Conv2D(4, (3, 2), dilation_rate=(2, 3), padding="same", groups=2, input_shape=(9, 11, 4)),
        Conv2D(6, 3, strides=2, groups=2, padding=1, activation="relu6"),
        Convolutional(filters=3, filter_size=3, stride=2, pad=(2, 1), pad_value=0.75),
        Flatten(), Dense(3)],
    "dilated_1d_and_3d": lambda: [
        Conv1D(3, 3, dilation_rate=2, input_shape=(13, 2)), Conv1D(2, 2, dilation_rate=3, groups=1),
        Flatten(), Dense(2)],
    "activation_layers": lambda: [
        Dense(12, input_shape=(7,)), Reshape((3, 4)), PReLU(shared_axes=[1]),
        ReLU(max_value=1.2, negative_slope=0.1, threshold=0.3), LeakyReLU(0.15), ELU(0.6),
        Softmax(axis=1), Reshape((2, 6)), PReLU(), Softmax(), Flatten(), ReLU(max_value=0.5),
        Dense(3)],
    "prelu_channels_first_input": lambda: [
        Conv2D(3, 3, input_shape=(6, 7, 2)), PReLU(shared_axes=[1, 2]), MaxPooling(pool_size=2),
        ReLU(threshold=0.2), Conv2D(2, 1), Softmax(), Flatten(), Dense(2)],
    # Every built-in activation function, in a convolution (channels-first inside ONNX) and as an
    # Activation layer after Dense (channels-last); tanh between them keeps exp from overflowing.
    **{f"activation_{name}": (lambda name=name: [
        Conv2D(3, 2, activation=name, input_shape=(5, 4, 2)), Flatten(),
        Dense(4, activation="tanh"), Activation(name)])
        for name in activations.names(include_custom=False)},
    "gelu_tanh": lambda: [
        Conv2D(3, 2, activation=activations.GELU(approximate=True), input_shape=(5, 4, 2)),
        Flatten(), Dense(4, activation=activations.GELU(approximate=True))],
    "depthwise_separable": lambda: [
        DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2, activation="relu",
                        input_shape=(9, 8, 3)),
        SeparableConv2D(4, (3, 2), padding="same", depth_multiplier=2, activation="gelu"),
        DepthwiseConv2D(2, dilation_rate=2, padding=((1, 0), (0, 1)), use_bias=False),
        SeparableConv2D(3, 2, strides=2, dilation_rate=1, use_bias=False),
        GlobalAveragePooling2D(keepdims=True), Flatten(), Dense(3, activation="silu")],
    "rank1_new_layers": lambda: [
        Conv1D(4, 3, dilation_rate=2, input_shape=(14, 2)), ZeroPadding1D((1, 2)), Cropping1D((2, 1)),
        DepthwiseConv1D(3, depth_multiplier=2, dilation_rate=2), SeparableConv1D(3, 3, padding="same"),
        SpatialDropout1D(0.3), MaxPool1D(2), GlobalMaxPooling1D(keepdims=True), Flatten(), Dense(2)],
    "rank1_global_average": lambda: [
        Conv1D(3, 2, input_shape=(7, 2)), GlobalAveragePooling1D(), Dense(2)],
    "padding_cropping_permute": lambda: [
        ZeroPadding2D(((1, 0), (2, 1)), input_shape=(5, 6, 2)), Conv2D(3, 3), Cropping2D(((1, 0), (0, 1))),
        AvgPool2D(2, padding="same"), SpatialDropout2D(0.5), ZeroPadding2D(1), Permute((2, 1, 3)),
        Cropping2D(1), Flatten(), Dense(3)],
    "rank3_new_layers": lambda: [
        ZeroPadding3D((1, 0, (0, 1)), input_shape=(4, 5, 4, 2)), Conv3D(2, 2), Cropping3D((1, 0, 1)),
        SpatialDropout3D(0.2), GlobalAveragePooling3D(keepdims=True), Flatten(), Dense(2)],
    "rank3_global_max": lambda: [Conv3D(2, 2, input_shape=(3, 4, 3, 1)), GlobalMaxPooling3D(), Dense(2)],
    "normalisation": lambda: [
        Conv2D(4, 3, padding="same", input_shape=(6, 5, 3)), LayerNormalization(axis=[1, 3]),
        Conv2D(4, 1), GroupNormalization(2), BatchNormalization(axis=1, center=False),
        Conv2D(4, 1), BatchNormalization(scale=False), LayerNormalization(scale=False),
        Rescaling([0.5, 1.0, 2.0, 3.0], 0.1), Conv2D(4, 1), Rescaling(2.0, -1.0),
        UpSampling2D((2, 3), interpolation="bilinear"), GaussianNoise(0.1), GaussianDropout(0.2),
        GroupNormalization(4, center=False), Flatten(), Dense(3)],
    "activation_options": lambda: [
        Dense(6, activation="relu6", input_shape=(5,)), Dense(6, activation="selu"),
        Dense(6, activation="gelu"), Dense(6, activation={"name": "gelu", "approximate": True}),
        Dense(6, activation="hard_sigmoid"), Dense(6, activation="hard_silu"),
        Dense(6, activation="softplus"), Dense(6, activation="softsign"),
        Dense(6, activation="exponential"), ReLU(max_value=1.5, negative_slope=0.1, threshold=0.3),
        LeakyReLU(0.2), ELU(0.5), Reshape((2, 3)), PReLU(shared_axes=[1]), Softmax(axis=1),
        Flatten(), Dense(3, activation="swish"), ReLU(negative_slope=0.2), ReLU()],
    "softmax_on_images": lambda: [
        Conv2D(3, 2, input_shape=(4, 5, 2)), Softmax(axis=1), PReLU(), Flatten(), Dense(2)],
}


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_onnxruntime_matches_predict(name, tmp_path):
    net = Net(seed=0)
    for layer in NETWORKS[name]():
        net.add(layer)
    check(net, tmp_path)


def test_every_layer_type_is_covered():
    from modularcnn.export.onnx import EXPORTERS

    used = {type(layer).__name__ for build in NETWORKS.values() for layer in build()}
    used |= {"MaxPooling", "MaxPooling2D", "Conv2D"}
    used |= {"NestedModel"}  # test_a_net_holding_a_graph_exports and the functional fixtures below
    aliases = {"MaxPool2D", "AveragePooling", "MaxPooling2D", "GlobalAveragePooling2D", "AvgPool1D",
               "AvgPool3D", "MaxPool3D"} | {f"Global{kind}Pool{r}D" for kind in ("Avg", "Max")
                                             for r in (1, 2, 3)}
    assert set(EXPORTERS) - used - aliases == set()


#: Registered layers the exporter refuses, and why (each refusal is checked below).
NOT_EXPORTED = {"InputLayer": "states the input shape; never a layer of a Net"}


def test_a_net_holding_a_graph_exports(tmp_path):
    from modularcnn import Input, Model
    from modularcnn.layers import Add

    x = Input((3,))
    net = Net(input_shape=(3,), layers=[Model(x, Add()([Dense(3)(x), x]), name="block"), Dense(2)])
    check(net, tmp_path)


def builtin_layers():
    """modularcnn's own registered layer classes (tests register custom ones too)."""
    return {name for name, cls in registered_layers().items() if cls.__module__.startswith("modularcnn.")}


def test_every_registered_layer_exports_or_is_refused_by_name():
    from modularcnn.export.onnx import EXPORTERS

    from modularcnn.export.onnx import MERGES

    missing = builtin_layers() - set(EXPORTERS) - set(MERGES) - set(NOT_EXPORTED)
    assert missing == set(), f"layers with no ONNX exporter and no stated refusal: {sorted(missing)}"


def test_every_builtin_activation_exports():
    from modularcnn.export.onnx import EXPORTED_ACTIVATIONS

    assert set(activations.names(include_custom=False)) == set(EXPORTED_ACTIVATIONS)


def test_custom_activation_is_refused_naming_it(tmp_path):
    net = Net(input_shape=(3,))
    net.add(Dense(2, activation=(lambda z: z * z, lambda z: 2 * z)))
    with pytest.raises(ValueError, match="activation .* is not supported"):
        net.export_onnx(tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_flatten_keeps_channels_last_order(tmp_path):
    net = Net(input_shape=(2, 3, 4), seed=0)
    net.add(Flatten())
    x = np.arange(24, dtype="float32").reshape(1, 2, 3, 4)
    np.testing.assert_array_equal(run_onnx(net, x, tmp_path), x.reshape(1, -1))
    net = Net(input_shape=(4, 3, 2), seed=0)
    net.add(Conv2D(2, 1, use_bias=False))
    net.add(Flatten())
    net.layers[0].params["kernel"][...] = np.eye(2).reshape(1, 1, 2, 2)
    x = np.arange(24, dtype="float32").reshape(1, 4, 3, 2)
    np.testing.assert_array_equal(run_onnx(net, x, tmp_path), x.reshape(1, -1))


def test_bad_opset_and_unsupported_layers_are_refused(tmp_path):
    net = Net(input_shape=(4,))
    net.add(Dense(2))
    for opset in (12, 10**6, "17", True):
        with pytest.raises(ValueError, match="opset must be an int"):
            net.export_onnx(tmp_path / "x.onnx", opset=opset)
    assert not (tmp_path / "x.onnx").exists()


def test_missing_onnx_names_the_extra(monkeypatch, tmp_path):
    real_import = builtins.__import__

    def no_onnx(name, *args, **kwargs):
        if name == "onnx" or name.startswith("onnx."):
            raise ImportError("No module named 'onnx'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    net = Net(input_shape=(4,))
    net.add(Dense(2))
    with pytest.raises(ImportError, match=r"modularcnn\[onnx\]"):
        net.export_onnx(tmp_path / "x.onnx")


def test_cli_export_writes_a_model_onnxruntime_runs(tmp_path):
    fixtures = Path(__file__).resolve().parent / "data" / "keras"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH", "")]))
    out = tmp_path / "model.onnx"
    done = subprocess.run([sys.executable, "-m", "modularcnn.cli", "export",
                           str(fixtures / "conv2d_stack.keras"), str(out)],
                          capture_output=True, text=True, timeout=120, env=env, check=False)
    assert done.returncode == 0, done.stderr
    assert "opset 17" in done.stdout
    data = np.load(fixtures / "conv2d_stack.npz")
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": data["x"]})[0]
    np.testing.assert_allclose(got, data["y"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("opset", [13, 18])
def test_normalisation_exports_at_old_and_new_opsets(opset, tmp_path):
    # ReduceMean takes its axes as an attribute up to opset 17 and as an input from 18.
    if opset > onnx.defs.onnx_opset_version():
        pytest.skip(f"the installed onnx writes opsets up to {onnx.defs.onnx_opset_version()}")
    net = Net(seed=0)
    for layer in NETWORKS["normalisation"]():
        net.add(layer)
    randomised(net)
    x = np.random.default_rng(2).normal(size=(2, *net.input_shape)).astype("float32")
    path = net.export_onnx(tmp_path / "model.onnx", opset=opset)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"input": x})[0], net.predict(x), rtol=1e-5, atol=1e-5)


# -- graph models (Model) --------------------------------------------------------------------------


def run_graph(model, xs, tmp_path):
    path = model.export_onnx(tmp_path / "graph.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == list(model.input_names)
    assert [o.name for o in session.get_outputs()] == list(model.output_names)
    return session.run(None, {name: x.astype(model.dtype) for name, x in zip(model.input_names, xs)})


def check_graph(model, xs, tmp_path):
    expected = model.predict(xs if len(xs) > 1 else xs[0])
    expected = expected if isinstance(expected, list) else [expected]
    got = run_graph(model, xs, tmp_path)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.shape == e.shape
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5 * max(1, np.abs(e).max()))


KERAS_FUNCTIONAL = Path(__file__).resolve().parent / "data" / "keras" / "functional"


@pytest.mark.parametrize("name", ["inception", "nested", "residual", "shared_layers",
                                  "two_in_two_out"])
def test_functional_keras_fixtures_export_and_match_predict(name, tmp_path):
    """Merges (Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate on channels and on
    rows, Dot), two inputs and two outputs, shared layers, nested Sequential and functional models."""
    from modularcnn import load_model

    model = load_model(KERAS_FUNCTIONAL / f"{name}.keras")
    data = np.load(KERAS_FUNCTIONAL / f"{name}.npz")
    xs = [data[f"x{k}"] for k in range(sum(key.startswith("x") for key in data))]
    check_graph(model, xs, tmp_path)
    # A batch of 1, and one of another size: the batch axis is dynamic.
    check_graph(model, [x[:1] for x in xs], tmp_path)
    check_graph(model, [np.concatenate([x, -x]) for x in xs], tmp_path)


def test_graph_with_broadcasting_merges_and_cosine_dot_exports(tmp_path):
    from modularcnn import Input, Model
    from modularcnn.layers import Add, Concatenate, Dot, Maximum, Multiply

    rng = np.random.default_rng(4)
    image = Input((5, 4, 3), name="image")
    h = Conv2D(3, 3, padding="same", activation="relu")(image)
    gate = GlobalAveragePooling2D(keepdims=True)(h)  # (1, 1, 3): broadcast against (5, 4, 3)
    h = Maximum()([Multiply()([h, gate]), Add()([h, gate])])
    vector = Dense(4)(Flatten()(h))
    other = Dense(4)(Flatten()(image))
    joined = Concatenate()([vector, Dot(axes=1, normalize=True)([vector, other])])
    model = randomised(Model(image, [joined, Dense(2)(other)]))
    check_graph(model, [rng.normal(size=(3, 5, 4, 3)).astype("float32")], tmp_path)


def test_dot_of_non_vectors_is_refused_by_name(tmp_path):
    from modularcnn import Input, Model
    from modularcnn.layers import Dot

    x = Input((3, 4))
    model = Model(x, Dot(axes=2, name="pairwise")([x, x]))
    with pytest.raises(ValueError, match="pairwise"):
        model.export_onnx(tmp_path / "x.onnx")


def test_cli_exports_a_functional_keras_file(tmp_path, capsys):
    from modularcnn import cli

    source = KERAS_FUNCTIONAL / "two_in_two_out.h5"
    assert cli.main(["export", str(source), str(tmp_path / "m.onnx")]) == 0
    assert "inputs image (batch, 6, 6, 2), vector (batch, 5)" in capsys.readouterr().out
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    data = np.load(KERAS_FUNCTIONAL / "two_in_two_out.npz")
    got = session.run(None, {"image": data["x0"], "vector": data["x1"]})
    for g, e in zip(got, [data["y0"], data["y1"]]):
        np.testing.assert_allclose(g, e, rtol=0, atol=1e-5 * max(1, np.abs(e).max()))
