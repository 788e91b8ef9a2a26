"""Functional Keras models (keras.Model(inputs, outputs)): the fixtures real Keras wrote
(scripts/make_keras_fixtures.py, functional_models) load into a modularcnn Model and predict what Keras
predicted; Models saved as .keras read back (and open in Keras, when it is installed) and keep Keras's
layer order; hostile functional configs are refused with ModelFileError in bounded time."""

import copy
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

import modularcnn
from modularcnn import Input, Model, ModelFileError, Net
from modularcnn.layers import (Add, Average, BatchNormalization, Concatenate, Conv2D, Dense, Dot,
                               Flatten, GlobalAveragePooling2D, LeakyReLU, Maximum, MaxPooling2D,
                               Minimum, Multiply, NestedModel, Subtract)
from modularcnn.saving import keras_functional

FIXTURES = Path(__file__).resolve().parent / "data" / "keras" / "functional"
NAMES = ["inception", "nested", "residual", "shared_layers", "two_in_two_out"]


def arrays(data, prefix):
    return [data[f"{prefix}{k}"] for k in range(sum(key.startswith(prefix) for key in data))]


def as_list(value):
    return value if isinstance(value, list) else [value]


def close_to_keras(predicted, expected):
    predicted = as_list(predicted)
    assert len(predicted) == len(expected)
    for got, want in zip(predicted, expected):
        scale = max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * scale)


def inputs_of(data):
    xs = arrays(data, "x")
    return xs if len(xs) > 1 else xs[0]


def test_fixtures_are_there():
    for name in NAMES:
        for suffix in (".keras", ".h5", ".weights.h5", ".npz"):
            assert (FIXTURES / f"{name}{suffix}").is_file(), f"{name}{suffix}"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_functional_fixture_predicts_what_keras_predicted(name, suffix):
    data = np.load(FIXTURES / f"{name}.npz")
    model = modularcnn.load_model(FIXTURES / f"{name}{suffix}")
    assert isinstance(model, Model) and not model.compiled
    assert len(model.inputs) == len(arrays(data, "x")) and len(model.outputs) == len(arrays(data, "y"))
    close_to_keras(model.predict(inputs_of(data)), arrays(data, "y"))


def test_the_fixtures_use_what_they_are_meant_to():
    shared = modularcnn.load_model(FIXTURES / "shared_layers.keras")
    assert shared.graph.call_counts[id(shared.get_layer("shared"))] == 2
    assert shared.graph.call_counts[id(shared.get_layer("twice"))] == 2
    nested = modularcnn.load_model(FIXTURES / "nested.keras")
    inner = [layer for layer in nested.layers if isinstance(layer, NestedModel)]
    assert [type(layer.model).__name__ for layer in inner] == ["Net", "Model"]
    two = modularcnn.load_model(FIXTURES / "two_in_two_out.h5")
    assert two.input_names == ["image", "vector"] and two.output_names == ["label", "score"]
    kinds = {type(layer).__name__ for layer in two.layers}
    assert {"Multiply", "Subtract", "Maximum", "Minimum", "Average", "Dot", "Concatenate"} <= kinds
    bn = modularcnn.load_model(FIXTURES / "residual.keras").layers
    stats = [layer.params["moving_variance"] for layer in bn if isinstance(layer, BatchNormalization)]
    assert stats and not np.allclose(stats[0], 1.0)


@pytest.mark.parametrize("name", NAMES)
def test_keras_weights_file_loads_into_the_functional_architecture(name):
    data = np.load(FIXTURES / f"{name}.npz")
    model = modularcnn.load_model(FIXTURES / f"{name}.h5")
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])
    model.load_weights(FIXTURES / f"{name}.weights.h5")
    close_to_keras(model.predict(inputs_of(data)), arrays(data, "y"))


@pytest.mark.parametrize("name", NAMES)
def test_our_layer_order_is_keras_order(name):
    """Keras addresses a functional model's weights by the position of its layers in model.layers;
    our order for a graph must be Keras's (map_graph), or weights files would swap same-shaped
    layers (inception has two Conv2D(2, 1) on the input)."""
    with zipfile.ZipFile(FIXTURES / f"{name}.keras") as archive:
        config = json.loads(archive.read("config.json"))
    model = modularcnn.load_model(FIXTURES / f"{name}.keras")
    order = [layer.name for layer in keras_functional.keras_layer_order(model.graph)]
    assert order == [entry["name"] for entry in config["config"]["layers"]]


def rebuilt_by_hand():
    """The inception fixture's graph built here, in a different call order than Keras's."""
    x = Input((9, 9, 3))
    pool = Conv2D(2, 1)(MaxPooling2D(3, strides=1, padding="same")(x))
    three_in = Conv2D(2, 1)
    one = Conv2D(2, 1, activation="relu")
    h = [one(x), Conv2D(3, 3, padding="same", activation="relu")(three_in(x)), pool]
    h = BatchNormalization(momentum=0.9)(Concatenate()(h))
    h = Concatenate(axis=1)([h, modularcnn.layers.AveragePooling2D(1)(h)])
    return Model(x, Dense(4, activation="softmax")(GlobalAveragePooling2D()(h)))


def test_keras_weights_file_loads_into_a_graph_built_here():
    data = np.load(FIXTURES / "inception.npz")
    model = rebuilt_by_hand()
    model.load_weights(FIXTURES / "inception.weights.h5")
    close_to_keras(model.predict(inputs_of(data)), arrays(data, "y"))


@pytest.mark.parametrize("name", NAMES)
def test_functional_fixture_written_back_reads_back_exactly(name, tmp_path):
    data = np.load(FIXTURES / f"{name}.npz")
    model = modularcnn.load_model(FIXTURES / f"{name}.keras")
    expected = as_list(model.predict(inputs_of(data)))
    for suffix in (".keras", ".h5"):
        model.save(tmp_path / f"again{suffix}")
        again = modularcnn.load_model(tmp_path / f"again{suffix}")
        for got, want in zip(as_list(again.predict(inputs_of(data))), expected):
            np.testing.assert_array_equal(got, want)
    # Our archive's weights file addresses the layers as Keras does: Keras's own model reads it.
    fresh = modularcnn.load_model(FIXTURES / f"{name}.h5")
    fresh.set_weights([np.zeros_like(w) for w in fresh.get_weights()])
    fresh.load_weights(tmp_path / "again.keras")
    for got, want in zip(as_list(fresh.predict(inputs_of(data))), expected):
        np.testing.assert_array_equal(got, want)


# -- the Keras 2 dialect ---------------------------------------------------------------------


def keras2_layer(entry):
    cfg = dict(entry["config"])
    if isinstance(cfg.get("dtype"), dict):
        cfg["dtype"] = cfg["dtype"]["config"]["name"]
    if "batch_shape" in cfg:
        cfg["batch_input_shape"] = cfg.pop("batch_shape")
    if entry["class_name"] == "BatchNormalization":
        cfg["axis"] = [3]
    if entry["class_name"] in ("Sequential", "Functional"):
        cfg = keras2_model({"class_name": entry["class_name"], "config": cfg})["config"]
    out = {"class_name": entry["class_name"], "config": cfg}
    if "inbound_nodes" in entry:
        out["name"] = entry["name"]
        out["inbound_nodes"] = [keras2_node(node) for node in entry["inbound_nodes"]]
    return out


def keras2_node(node):
    argument = node["args"][0]
    tensors = argument if isinstance(argument, list) else [argument]
    return [[*t["config"]["keras_history"], {}] for t in tensors]


def keras2_model(config):
    """A Keras 3 model config as tf.keras writes it: inbound nodes as [[name, node, tensor, kwargs]],
    input_layers/output_layers always lists, no module wrappers, Keras 2 layer options."""
    body = dict(config["config"])
    body["layers"] = [keras2_layer(entry) for entry in body["layers"]]
    for key in ("input_layers", "output_layers"):
        if key in body and isinstance(body[key][0], str):
            body[key] = [body[key]]
    return {"class_name": config["class_name"], "config": body}


@pytest.mark.parametrize("name", ["nested", "shared_layers", "two_in_two_out"])
def test_keras2_dialect_of_functional_models(name, tmp_path):
    """Rewritten from the Keras 3 fixture: Keras 2's config and its weights file layout
    (``<layer>/<inner layer>/kernel:0``, listed in each group in reverse of the layer's order)."""
    data = np.load(FIXTURES / f"{name}.npz")
    path = tmp_path / "keras2.h5"
    with h5py.File(FIXTURES / f"{name}.h5", "r") as source, h5py.File(path, "w") as out:
        out.attrs["model_config"] = json.dumps(keras2_model(json.loads(source.attrs["model_config"])))
        out.attrs["keras_version"] = "2.15.0"
        weights = out.create_group("model_weights")
        names = [n.decode() if isinstance(n, bytes) else n
                 for n in source["model_weights"].attrs["layer_names"]]
        weights.attrs["layer_names"] = [n.encode() for n in names]
        for layer in names:
            group, old = weights.create_group(layer), source["model_weights"][layer]
            stored = [w.decode() if isinstance(w, bytes) else w for w in old.attrs["weight_names"]]
            new_names = []
            for weight in reversed(stored):
                new = "/".join(weight.split("/")[-2:]) + ":0"  # tf.keras: no outer model's name
                group.create_dataset(new, data=old[weight][()])
                new_names.append(new)
            group.attrs["weight_names"] = [n.encode() for n in new_names]
    close_to_keras(modularcnn.load_model(path).predict(inputs_of(data)), arrays(data, "y"))


# -- Models written as .keras ------------------------------------------------------------------


def graph_of_everything(seed=3):
    """Two inputs, two outputs; merges, a shared layer, a nested Net and Model, and layers that are
    written as chains of Keras layers (explicit padding, leaky ReLU activation)."""
    modularcnn.utils.set_random_seed(seed)
    image = Input((6, 5, 2), name="image")
    vector = Input((4,), name="vector")
    block = Net(input_shape=(6, 5, 2), layers=[Conv2D(3, 3, padding=((1, 0), (2, 1))),
                                               BatchNormalization(), LeakyReLU(0.2)], name="block")
    h = block(image)
    inner_in = Input((4,))
    inner = Model(inner_in, Add()([Dense(4)(inner_in), inner_in]), name="inner")
    shared = Dense(4, activation="tanh", name="shared")
    a = shared(Dense(4, activation="leakyrelu", name="from_image")(
        GlobalAveragePooling2D()(Conv2D(4, 1)(h))))
    b = shared(inner(vector))
    merged = Concatenate()([Multiply()([a, b]), Subtract()([a, b]), Maximum()([a, b]),
                            Minimum()([a, b]), Average()([a, b]), Dot(axes=1)([a, b])])
    label = Dense(3, activation="softmax", name="label")(merged)
    score = Dense(1, name="score")(Add()([a, b]))
    model = Model([image, vector], [label, score], name="everything")
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        for key, value in layer.params.items():
            value[...] = rng.uniform(0.5, 1.5, value.shape) if key.endswith("variance") \
                else rng.normal(0, 0.5, value.shape)
    xs = [rng.normal(size=(4, 6, 5, 2)).astype("float32"), rng.normal(size=(4, 4)).astype("float32")]
    return model, xs


def test_model_saved_as_keras_reads_back_exactly(tmp_path):
    model, xs = graph_of_everything()
    model.save(tmp_path / "model.keras")
    with zipfile.ZipFile(tmp_path / "model.keras") as archive:
        config = json.loads(archive.read("config.json"))
    assert config["class_name"] == "Functional"
    assert config["config"]["output_layers"] == [["label", 0, 0], ["score", 0, 0]]
    shared = [e for e in config["config"]["layers"] if e["name"] == "shared"][0]
    assert len(shared["inbound_nodes"]) == 2
    again = modularcnn.load_model(tmp_path / "model.keras")
    for got, want in zip(again.predict(xs), model.predict(xs)):
        np.testing.assert_array_equal(got, want)


def test_a_net_holding_a_graph_is_written_as_nested_keras_models(tmp_path):
    x = Input((3,))
    block = Model(x, Add()([Dense(3)(x), x]), name="block")
    net = Net(input_shape=(3,), layers=[block, Dense(2)])
    values = np.random.default_rng(0).normal(size=(5, 3)).astype("float32")
    net.save(tmp_path / "net.keras")
    again = modularcnn.load_model(tmp_path / "net.keras")
    assert isinstance(again.layers[0], NestedModel) and isinstance(again.layers[0].model, Model)
    np.testing.assert_array_equal(again.predict(values), net.predict(values))


def test_a_graph_layer_keras_cannot_express_is_refused_before_writing(tmp_path):
    x = Input((4, 4, 1))
    residual = modularcnn.layers.Residual([Conv2D(1, 3, padding="same")])
    model = Model(x, Add()([residual(x), x]))
    with pytest.raises(ValueError, match="Residual"):
        model.save(tmp_path / "x.keras")
    assert not (tmp_path / "x.keras").exists()


KERAS_CHECK = """
import sys
import numpy as np
import keras
model = keras.models.load_model(sys.argv[1])
data = np.load(sys.argv[2])
xs = [data[f"x{k}"] for k in range(len(data.files))]
ys = model.predict(xs if len(xs) > 1 else xs[0], verbose=0)
ys = ys if isinstance(ys, (list, tuple)) else [ys]
np.savez(sys.argv[3], *[keras.ops.convert_to_numpy(y) for y in ys])
"""


def keras_predicts(model, xs, tmp_path, monkeypatch):
    """What real Keras (a subprocess, torch backend) predicts for ``xs`` (a list, one array per input)
    from ``model`` saved as .keras; skips the calling test without Keras."""
    monkeypatch.setenv("KERAS_BACKEND", os.environ.get("KERAS_BACKEND", "torch"))
    pytest.importorskip("keras")
    model.save(tmp_path / "ours.keras")
    np.savez(tmp_path / "x.npz", **{f"x{k}": x for k, x in enumerate(xs)})
    done = subprocess.run([sys.executable, "-c", KERAS_CHECK, str(tmp_path / "ours.keras"),
                           str(tmp_path / "x.npz"), str(tmp_path / "y.npz")],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    data = np.load(tmp_path / "y.npz")
    return [data[f"arr_{k}"] for k in range(len(data.files))]


def test_keras_opens_our_functional_archive_and_predicts_the_same(tmp_path, monkeypatch):
    model, xs = graph_of_everything()
    close_to_keras(keras_predicts(model, xs, tmp_path, monkeypatch), model.predict(xs))


def test_keras_opens_a_fixture_we_wrote_back(tmp_path, monkeypatch):
    data = np.load(FIXTURES / "shared_layers.npz")
    model = modularcnn.load_model(FIXTURES / "shared_layers.h5")
    close_to_keras(keras_predicts(model, arrays(data, "x"), tmp_path, monkeypatch), arrays(data, "y"))


def test_cli_converts_functional_files(tmp_path):
    from modularcnn import cli

    data = np.load(FIXTURES / "two_in_two_out.npz")
    assert cli.main(["convert", str(FIXTURES / "two_in_two_out.keras"), str(tmp_path / "ours.h5")]) == 0
    assert cli.main(["convert", str(tmp_path / "ours.h5"), str(tmp_path / "back.keras")]) == 0
    close_to_keras(modularcnn.load_model(tmp_path / "back.keras").predict(inputs_of(data)),
                   arrays(data, "y"))


# -- hostile functional configs ----------------------------------------------------------------


def fixture_config(name="shared_layers"):
    with zipfile.ZipFile(FIXTURES / f"{name}.keras") as archive:
        return {member: archive.read(member) for member in archive.namelist()}


def with_config(tmp_path, change, name="shared_layers"):
    members = fixture_config(name)
    config = json.loads(members["config.json"])
    change(config)
    members["config.json"] = json.dumps(config).encode()
    path = tmp_path / "hostile.keras"
    with zipfile.ZipFile(path, "w") as out:
        for member, data in members.items():
            out.writestr(member, data)
    return path


def layer_entry(config, name):
    return [e for e in config["config"]["layers"] if e["name"] == name][0]


def history(entry, node=0, position=0):
    argument = entry["inbound_nodes"][node]["args"][0]
    tensor = argument[position] if isinstance(argument, list) else argument
    return tensor["config"]["keras_history"]


def make_cycle(config):
    # shared's first call now takes twice's first output, which needs shared's first output.
    history(layer_entry(config, "shared"))[:] = ["twice", 0, 0]


def unknown_layer(config):
    history(layer_entry(config, "twice"))[0] = "nowhere"


def node_out_of_range(config):
    history(layer_entry(config, "twice"))[1] = 7


def second_tensor(config):
    history(layer_entry(config, "twice"))[2] = 1


def training_kwarg(config):
    layer_entry(config, "shared")["inbound_nodes"][0]["kwargs"] = {"training": True}


def constant_argument(config):
    layer_entry(config, "shared")["inbound_nodes"][0]["args"] = [[1.0, 2.0]]


def output_is_unknown(config):
    config["config"]["output_layers"] = ["ghost", 0, 0]


def input_is_not_an_input(config):
    config["config"]["input_layers"] = [["shared", 0, 0], ["right", 0, 0]]


def ops_layer(config):
    entry = layer_entry(config, "subtract_1")
    entry["module"] = "keras.src.ops.numpy"


def tf_op_lambda(config):
    layer_entry(config, "subtract_1")["class_name"] = "TFOpLambda"


def lambda_layer(config):
    layer_entry(config, "subtract_1")["class_name"] = "Lambda"


def duplicate_name(config):
    layer_entry(config, "subtract_1")["name"] = "shared"


@pytest.mark.parametrize("change, message", [
    (make_cycle, "cycle"),
    (unknown_layer, "unknown layer 'nowhere'"),
    (node_out_of_range, "call 7 of layer 'shared'"),
    (second_tensor, "tensor 1 of layer 'shared'"),
    (training_kwarg, "training=True"),
    (constant_argument, "not on tensors"),
    (output_is_unknown, "unknown layer 'ghost'"),
    (input_is_not_an_input, "not an InputLayer"),
    (ops_layer, "operation applied to tensors"),
    (tf_op_lambda, "operation applied to tensors"),
    (lambda_layer, "Lambda layer"),
    (duplicate_name, "two layers are named 'shared'"),
])
def test_hostile_functional_configs_are_refused_naming_what(change, message, tmp_path):
    path = with_config(tmp_path, change)
    with pytest.raises(ModelFileError, match=message):
        modularcnn.load_model(path)


def activation_entry(name, source):
    return {"class_name": "Activation", "config": {"name": name, "activation": "tanh"}, "name": name,
            "inbound_nodes": [[[source, 0, 0, {}]]]}


def chain_config(count, reverse=False):
    layers = [{"class_name": "InputLayer", "config": {"batch_input_shape": [None, 3], "name": "in"},
               "name": "in", "inbound_nodes": []}]
    layers += [activation_entry(f"a{k}", "in" if k == 0 else f"a{k - 1}") for k in range(count)]
    if reverse:
        layers = layers[::-1]
    return {"class_name": "Functional", "config": {
        "name": "chain", "layers": layers, "input_layers": [["in", 0, 0]],
        "output_layers": [[f"a{count - 1}", 0, 0]]}}


def keras2_file(path, config):
    with h5py.File(path, "w") as out:
        out.attrs["model_config"] = json.dumps(config)
        out.attrs["keras_version"] = "2.15.0"
        weights = out.create_group("model_weights")
        weights.attrs["layer_names"] = [b"in"]
        weights.create_group("in").attrs["weight_names"] = np.array([], dtype="S1")
    return path


def test_a_huge_number_of_layers_is_refused_before_building(tmp_path):
    path = keras2_file(tmp_path / "huge.h5", chain_config(keras_functional.MAX_LAYERS + 1))
    with pytest.raises(ModelFileError, match="more than"):
        modularcnn.load_model(path)


def test_a_long_chain_listed_backwards_builds_in_one_pass(tmp_path):
    """The work list calls each layer once its input exists, whatever the order of the config (a
    repeated scan would be quadratic); no recursion, so depth is no limit."""
    path = keras2_file(tmp_path / "chain.h5", chain_config(1500, reverse=True))
    model = modularcnn.load_model(path)
    x = np.linspace(-1, 1, 6).reshape(2, 3).astype("float32")
    y = x
    for _ in range(1500):
        y = np.tanh(y)
    np.testing.assert_allclose(model.predict(x), y, rtol=1e-6)


def test_models_nested_too_deep_are_refused(tmp_path):
    inner = chain_config(1)
    for depth in range(keras_functional.MAX_DEPTH + 2):
        entry = {"class_name": "Functional", "config": copy.deepcopy(inner["config"]),
                 "name": f"m{depth}", "inbound_nodes": [[["in", 0, 0, {}]]]}
        inner = {"class_name": "Functional", "config": {
            "name": f"outer{depth}",
            "layers": [chain_config(1)["config"]["layers"][0], entry],
            "input_layers": [["in", 0, 0]], "output_layers": [[f"m{depth}", 0, 0]]}}
    with pytest.raises(ModelFileError, match="nested more than"):
        modularcnn.load_model(keras2_file(tmp_path / "deep.h5", inner))



def nets_inside_a_net():
    """A Sequential holding a functional model and a Sequential (nested both ways)."""
    modularcnn.utils.set_random_seed(5)
    x = Input((3,))
    block = Model(x, Add()([Dense(3)(x), x]), name="block")
    stack = Net(input_shape=(3,), layers=[Dense(4, activation="tanh"), BatchNormalization()],
                name="stack")
    net = Net(input_shape=(3,), layers=[block, stack, Dense(2)])
    rng = np.random.default_rng(5)
    # Vectors (biases, batch-norm statistics) positive, so the variances are.
    weights = [rng.uniform(0.5, 1.5, w.shape) if w.ndim == 1 else rng.normal(0, 0.5, w.shape)
               for w in net.get_weights()]
    net.set_weights(weights)
    return net, rng.normal(size=(5, 3)).astype("float32")


def test_nested_sequential_and_functional_models_in_a_sequential_read_back(tmp_path):
    net, x = nets_inside_a_net()
    net.save(tmp_path / "net.keras")
    again = modularcnn.load_model(tmp_path / "net.keras")
    assert [type(layer.model).__name__ for layer in again.layers[:2]] == ["Model", "Net"]
    np.testing.assert_array_equal(again.predict(x), net.predict(x))
    fresh = modularcnn.load_model(tmp_path / "net.keras")
    fresh.set_weights([np.zeros_like(w) for w in fresh.get_weights()])
    fresh.load_weights(tmp_path / "net.keras")
    np.testing.assert_array_equal(fresh.predict(x), net.predict(x))


def test_keras_opens_nested_models_in_a_sequential(tmp_path, monkeypatch):
    net, x = nets_inside_a_net()
    close_to_keras(keras_predicts(net, [x], tmp_path, monkeypatch), [net.predict(x)])
