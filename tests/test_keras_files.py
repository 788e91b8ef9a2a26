"""Keras files: the fixtures real Keras wrote (scripts/make_keras_fixtures.py) load and predict what
Keras predicted; networks saved as .keras read back (and open in Keras, when it is installed); hostile
archives and configs are refused with ModelFileError in bounded time and memory."""

import io
import json
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

import modularcnn
from modularcnn import ModelFileError, Net
from modularcnn import activations
from modularcnn.layers import (ELU, Activation, AveragePooling2D, BatchNormalization, Conv1D, Conv2D,
                               Conv2DTranspose, Convolutional, Dense, Dropout, Flatten,
                               GlobalAveragePooling2D, LeakyReLU, MaxPooling, PReLU, ReLU, Reshape,
                               Softmax, UpSampling2D, registered_layers)
from modularcnn.saving import keras_layers
from modularcnn.saving import keras_format

FIXTURES = Path(__file__).resolve().parent / "data" / "keras"
NAMES = sorted(p.stem for p in FIXTURES.glob("*.npz") if not p.stem.endswith(".keras2"))
#: The same models written by tf-keras 2.21 (Keras 2), with its own predictions.
KERAS2_NAMES = sorted(p.stem[:-len(".keras2")] for p in FIXTURES.glob("*.keras2.npz"))
#: Fixtures of layers and activations only Keras 3 has (make_keras_fixtures.keras3_models).
KERAS3_ONLY = ["dilated_conv1d", "keras3_activations"]


def close_to_keras(predicted, expected):
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(predicted, expected, rtol=0, atol=1e-5 * scale)


def test_fixtures_are_there():
    assert len(NAMES) >= 7
    for name in NAMES:
        for suffix in (".keras", ".h5", ".weights.h5"):
            assert (FIXTURES / f"{name}{suffix}").is_file()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_every_fixture_predicts_what_keras_predicted(name, suffix):
    data = np.load(FIXTURES / f"{name}.npz")
    net = modularcnn.load_model(FIXTURES / f"{name}{suffix}")
    assert not net.compiled
    close_to_keras(net.predict(data["x"]), data["y"])


@pytest.mark.parametrize("name", NAMES)
def test_keras_weights_file_loads_into_the_same_architecture(name):
    data = np.load(FIXTURES / f"{name}.npz")
    net = modularcnn.load_model(FIXTURES / f"{name}.keras")
    net.set_weights([np.zeros_like(w) for w in net.get_weights()])
    net.load_weights(FIXTURES / f"{name}.weights.h5")
    close_to_keras(net.predict(data["x"]), data["y"])


@pytest.mark.parametrize("name", KERAS2_NAMES)
def test_every_keras2_fixture_predicts_what_keras2_predicted(name):
    data = np.load(FIXTURES / f"{name}.keras2.npz")
    net = modularcnn.load_model(FIXTURES / f"{name}.keras2.h5")
    close_to_keras(net.predict(data["x"]), data["y"])


def test_keras2_fixtures_are_there():
    assert KERAS2_NAMES == sorted(set(NAMES) - set(KERAS3_ONLY))
    assert set(KERAS3_ONLY) <= set(NAMES)
    with h5py.File(FIXTURES / "conv2d_stack.keras2.h5", "r") as file:
        assert file.attrs["keras_version"].startswith("2.")
        assert "batch_input_shape" in file.attrs["model_config"]


def test_keras_dialects_of_one_model_build_the_same_layers():
    from_archive = modularcnn.load_model(FIXTURES / "conv2d_stack.keras")
    from_h5 = modularcnn.load_model(FIXTURES / "conv2d_stack.h5")
    assert [type(l).__name__ for l in from_archive.layers] == [type(l).__name__ for l in from_h5.layers]
    assert [l.name for l in from_archive.layers][0] == "conv"


def keras2_dialect(config):
    """The config as Keras 2 / tf.keras wrote it: batch_input_shape, LeakyReLU(alpha), axis lists,
    dtype strings, no module/registered_name wrappers."""
    layers = []
    for entry in config["config"]["layers"]:
        cfg = dict(entry["config"])
        if "dtype" in cfg and isinstance(cfg["dtype"], dict):
            cfg["dtype"] = cfg["dtype"]["config"]["name"]
        if "batch_shape" in cfg:
            cfg["batch_input_shape"] = cfg.pop("batch_shape")
        if entry["class_name"] == "LeakyReLU":
            cfg["alpha"] = cfg.pop("negative_slope")
        if entry["class_name"] == "BatchNormalization":
            cfg["axis"] = [3]
        layers.append({"class_name": entry["class_name"], "config": cfg})
    return {"class_name": "Sequential", "config": {"name": config["config"]["name"],
                                                   "layers": layers}}


@pytest.mark.parametrize("name", ["conv2d_stack", "strided_same"])
def test_keras2_style_h5_with_colon_weight_names(name, tmp_path):
    """Keras 2's config dialect and weights at ``<layer>/<layer>/kernel:0`` listed in each group's
    ``weight_names`` in another order than the layer's (rewritten from the Keras 3 fixture)."""
    data = np.load(FIXTURES / f"{name}.npz")
    source = h5py.File(FIXTURES / f"{name}.h5", "r")
    config = json.loads(source.attrs["model_config"])
    path = tmp_path / "keras2.h5"
    with h5py.File(path, "w") as out:
        out.attrs["model_config"] = json.dumps(keras2_dialect(config))
        out.attrs["keras_version"] = "2.15.0"
        weights = out.create_group("model_weights")
        names = [n.decode() if isinstance(n, bytes) else n
                 for n in source["model_weights"].attrs["layer_names"]]
        weights.attrs["layer_names"] = [n.encode() for n in names]
        for layer in names:
            group = weights.create_group(layer)
            old = source["model_weights"][layer]
            stored = [w.decode() if isinstance(w, bytes) else w for w in old.attrs["weight_names"]]
            new_names = []
            # Keras 2 lists them in the layer's order under the layer's own name, with ":0".
            for weight in reversed(stored) if layer == "conv" else stored:
                short = weight.split("/")[-1]
                new = f"{layer}/{short}:0"
                group.create_dataset(new, data=old[weight][()])
                new_names.append(new)
            group.attrs["weight_names"] = [n.encode() for n in new_names]
    source.close()
    close_to_keras(modularcnn.load_model(path).predict(data["x"]), data["y"])


# -- writing .keras ---------------------------------------------------------------------------


def seed_style_net():
    """Every layer the Keras writer translates, with seed-style explicit padding and leaky ReLU."""
    net = Net(input_shape=(12, 10, 3), seed=3, dtype="float32", name="ours")
    net.add(Convolutional(filters=4, filter_size=3, stride=1, pad=1, activation="leakyrelu",
                          alpha=0.1))
    net.add(BatchNormalization())
    net.add(MaxPooling(pool_size=2))
    net.add(Conv2D(5, 3, strides=2, padding="same", activation="elu"))
    net.add(UpSampling2D(2))
    net.add(Conv2DTranspose(3, 2, strides=2, padding="valid", activation="relu"))
    net.add(AveragePooling2D(2, padding="same"))
    net.add(Activation("tanh"))
    net.add(GlobalAveragePooling2D())
    net.add(Dropout(0.2))
    net.add(Dense(4, activation="softmax"))
    rng = np.random.default_rng(1)
    weights = net.get_weights()
    net.set_weights([rng.uniform(0.5, 1.5, w.shape) if i in (4, 5) else rng.normal(0, 0.5, w.shape)
                     for i, w in enumerate(weights)])
    return net


def test_saved_keras_archive_reads_back_exactly(tmp_path):
    net = seed_style_net()
    x = np.random.default_rng(0).normal(size=(5, 12, 10, 3)).astype("float32")
    net.save(tmp_path / "ours.keras")
    with zipfile.ZipFile(tmp_path / "ours.keras") as archive:
        assert sorted(archive.namelist()) == ["config.json", "metadata.json", "model.weights.h5"]
        config = json.loads(archive.read("config.json"))
    classes = [entry["class_name"] for entry in config["config"]["layers"]]
    assert classes[:4] == ["InputLayer", "ZeroPadding2D", "Conv2D", "LeakyReLU"]
    loaded = modularcnn.load_model(tmp_path / "ours.keras")
    np.testing.assert_array_equal(loaded.predict(x), net.predict(x))
    other = seed_style_net()
    other.set_weights([np.zeros_like(w) for w in other.get_weights()])
    other.load_weights(tmp_path / "ours.keras")
    np.testing.assert_array_equal(other.predict(x), net.predict(x))


def test_saving_a_layer_keras_cannot_express_is_refused_before_writing(tmp_path):
    net = Net(input_shape=(6, 6, 1))
    net.add(MaxPooling(pool_size=2, pad=1))
    with pytest.raises(ValueError, match="explicit pooling padding"):
        net.save(tmp_path / "x.keras")
    assert not (tmp_path / "x.keras").exists()


def keras3_net():
    """Options and layers only Keras 3 spells this way: dilation, groups, ReLU's options, PReLU,
    softmax along a non-last axis, and every built-in activation (random weights)."""
    net = Net(input_shape=(9, 8, 4), seed=0)
    names = [n for n in activations.names(include_custom=False) if n not in ("leakyrelu", "softmax")]
    for layer in [Conv2D(4, (3, 2), dilation_rate=(2, 1), groups=2, padding="same", activation="gelu"),
                  ReLU(max_value=1.5, negative_slope=0.1, threshold=0.2), PReLU(shared_axes=[1, 2]),
                  Conv2D(4, 1, activation=activations.ReLU(negative_slope=0.2)), Softmax(axis=1),
                  LeakyReLU(0.15), ELU(0.6), Conv2D(3, 2, strides=2, activation="leakyrelu", alpha=0.1),
                  Flatten(), Dense(5 * len(names), activation="tanh"), Reshape((len(names), 5))]:
        net.add(layer)
    for name in names:
        net.add(Activation(name))
    net.add(Reshape((-1,)))
    net.add(Dense(3, activation="elu", alpha=0.5))
    rng = np.random.default_rng(2)
    net.set_weights([rng.normal(0, 0.3, w.shape) for w in net.get_weights()])
    return net


def test_keras3_options_and_activations_read_back_exactly(tmp_path):
    net = keras3_net()
    x = np.random.default_rng(0).normal(size=(4, 9, 8, 4)).astype("float32")
    net.save(tmp_path / "ours.keras")
    loaded = modularcnn.load_model(tmp_path / "ours.keras")
    np.testing.assert_array_equal(loaded.predict(x), net.predict(x))
    kinds = [type(layer).__name__ for layer in loaded.layers]
    assert kinds[1:3] == ["ReLU", "PReLU"] and "Softmax" in kinds and "ELU" in kinds
    assert loaded.layers[0].dilation_rate == (2, 1) and loaded.layers[0].groups == 2


#: Our layers that cannot be written to a Keras file, and why (each is refused when saving).
NOT_WRITABLE = {"Residual": "Keras has no residual layer; a graph model with Add expresses it",
                "InputLayer": "written as the model's Keras InputLayer, never as a layer"}
#: Written, but not by keras_layers_of: a nested Net or Model becomes a nested Keras Sequential or
#: Functional model config (tests/test_keras_functional.py).
WRITTEN_AS_MODELS = {"NestedModel"}


def builtin_layers():
    """modularcnn's own registered layer classes (tests register custom ones too)."""
    return {name for name, cls in registered_layers().items() if cls.__module__.startswith("modularcnn.")}


def test_every_registered_layer_is_written_or_refused_by_name():
    missing = builtin_layers() - keras_layers.WRITABLE - set(NOT_WRITABLE) - WRITTEN_AS_MODELS
    assert missing == set(), f"layers with no Keras mapping and no stated refusal: {sorted(missing)}"


@pytest.mark.parametrize("make, message", [
    (lambda: Convolutional(input_shape=(5, 5, 1), filters=2, filter_size=3, pad=1, pad_value=0.5),
     "pad_value=0.5"),
    (lambda: Conv2D(2, 3, input_shape=(5, 5, 1), activation=activations.GELU(approximate=True)),
     "approximate=True"),
    (lambda: Dense(2, input_shape=(3,), activation=(lambda z: z, lambda z: 1 + 0 * z)),
     "no Keras equivalent"),
])
def test_options_keras_cannot_express_are_refused_before_writing(make, message, tmp_path):
    net = Net(seed=0)
    net.add(make())
    with pytest.raises(ValueError, match=message):
        net.save(tmp_path / "x.keras")
    assert not (tmp_path / "x.keras").exists()


def test_keras2_hard_sigmoid_is_refused_not_misread(tmp_path):
    """Keras 2's hard_sigmoid is clip(0.2 x + 0.5); ours (Keras 3's) is relu6(x + 3) / 6."""
    path = tmp_path / "old.h5"
    with h5py.File(FIXTURES / "mlp.keras2.h5", "r") as source, h5py.File(path, "w") as out:
        for key in source:
            source.copy(key, out)
        for key, value in source.attrs.items():
            out.attrs[key] = value
        out.attrs["model_config"] = source.attrs["model_config"].replace('"tanh"', '"hard_sigmoid"')
    with pytest.raises(ModelFileError, match="hard_sigmoid.*Keras 2"):
        modularcnn.load_model(path)


KERAS_CHECK = """
import os, sys
os.environ.setdefault("KERAS_BACKEND", "torch")
import numpy as np, keras
model = keras.models.load_model(sys.argv[1])
np.save(sys.argv[3], keras.ops.convert_to_numpy(model.predict(np.load(sys.argv[2]), verbose=0)))
"""


def keras_predicts(net, x, tmp_path, monkeypatch):
    """What real Keras (in a subprocess, torch backend) predicts for ``x`` from ``net`` saved as
    ``.keras``; skips the calling test when Keras is not installed."""
    monkeypatch.setenv("KERAS_BACKEND", os.environ.get("KERAS_BACKEND", "torch"))
    pytest.importorskip("keras")
    net.save(tmp_path / "ours.keras")
    np.save(tmp_path / "x.npy", x)
    done = subprocess.run([sys.executable, "-c", KERAS_CHECK, str(tmp_path / "ours.keras"),
                           str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return np.load(tmp_path / "y.npy")


def test_keras_opens_our_archive_and_predicts_the_same(tmp_path, monkeypatch):
    net = seed_style_net()
    x = np.random.default_rng(0).normal(size=(5, 12, 10, 3)).astype("float32")
    close_to_keras(keras_predicts(net, x, tmp_path, monkeypatch), net.predict(x))


def test_keras_opens_our_keras3_layers_and_predicts_the_same(tmp_path, monkeypatch):
    net = keras3_net()
    x = np.random.default_rng(0).normal(size=(4, 9, 8, 4)).astype("float32")
    close_to_keras(keras_predicts(net, x, tmp_path, monkeypatch), net.predict(x))


# -- hostile and malformed files -----------------------------------------------------------


def archive(path, members):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as out:
        for name, data in members.items():
            out.writestr(name, data)
    return path


def fixture_members(name="mlp"):
    with zipfile.ZipFile(FIXTURES / f"{name}.keras") as source:
        return {member: source.read(member) for member in source.namelist()}


def test_truncated_archive_is_refused(tmp_path):
    data = (FIXTURES / "mlp.keras").read_bytes()
    path = tmp_path / "cut.keras"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="cut.keras"):
        modularcnn.load_model(path)


def test_path_traversal_member_is_refused(tmp_path):
    members = fixture_members()
    members["../../evil.txt"] = b"x"
    with pytest.raises(ModelFileError, match="unsafe path"):
        modularcnn.load_model(archive(tmp_path / "evil.keras", members))


def test_zip_bomb_config_is_refused_without_inflating(tmp_path):
    members = fixture_members()
    members["config.json"] = b" " * (keras_format.MAX_CONFIG_BYTES + 1)
    with pytest.raises(ModelFileError, match="declares"):
        modularcnn.load_model(archive(tmp_path / "bomb.keras", members))


def test_member_that_inflates_past_its_declared_size_is_refused(tmp_path):
    members = fixture_members()
    members["config.json"] = b" " * 5_000_000 + members["config.json"]
    path = archive(tmp_path / "liar.keras", members)
    raw = bytearray(path.read_bytes())
    # Make the central directory (what zipfile trusts) declare 1 KB for config.json.
    offset = raw.find(b"PK\x01\x02")
    while True:
        offset = raw.find(b"PK\x01\x02", offset)
        name_length = struct.unpack_from("<H", raw, offset + 28)[0]
        if bytes(raw[offset + 46: offset + 46 + name_length]) == b"config.json":
            struct.pack_into("<I", raw, offset + 24, 1000)
            break
        offset += 4
    path.write_bytes(bytes(raw))
    with pytest.raises(ModelFileError):
        modularcnn.load_model(path)


def config_with(layer_entry, name="mlp"):
    members = fixture_members(name)
    config = json.loads(members["config.json"])
    config["config"]["layers"].insert(1, layer_entry)
    members["config.json"] = json.dumps(config).encode()
    return members


def test_lambda_layer_is_refused_naming_it(tmp_path):
    members = config_with({"module": "keras.layers", "class_name": "Lambda",
                           "config": {"name": "sneaky", "function": "lambda x: x"}})
    with pytest.raises(ModelFileError, match="'sneaky' is a Lambda layer"):
        modularcnn.load_model(archive(tmp_path / "lambda.keras", members))


def test_custom_object_is_refused_listing_what_is_supported(tmp_path):
    members = config_with({"module": "mypackage.layers", "class_name": "Dense",
                           "registered_name": "MyPackage>Dense", "config": {"name": "mine"}})
    with pytest.raises(ModelFileError, match="custom object.*supported Keras layers: .*Conv2D"):
        modularcnn.load_model(archive(tmp_path / "custom.keras", members))


def test_channels_first_convolution_is_refused(tmp_path):
    members = fixture_members("conv2d_stack")
    config = json.loads(members["config.json"])
    config["config"]["layers"][1]["config"]["data_format"] = "channels_first"
    members["config.json"] = json.dumps(config).encode()
    with pytest.raises(ModelFileError, match="data_format='channels_first' is not supported"):
        modularcnn.load_model(archive(tmp_path / "cf.keras", members))


def test_unknown_option_is_refused_not_ignored(tmp_path):
    members = fixture_members("mlp")
    config = json.loads(members["config.json"])
    config["config"]["layers"][1]["config"]["lora_rank"] = 4
    members["config.json"] = json.dumps(config).encode()
    with pytest.raises(ModelFileError, match="lora_rank"):
        modularcnn.load_model(archive(tmp_path / "lora.keras", members))


@pytest.mark.parametrize("units", [20_000_000, 10**9])
def test_config_declaring_a_huge_layer_is_refused_before_allocating(units, tmp_path):
    members = fixture_members("mlp")
    config = json.loads(members["config.json"])
    config["config"]["layers"][1]["config"]["units"] = units
    members["config.json"] = json.dumps(config).encode()
    with pytest.raises(ModelFileError, match="more than the"):
        modularcnn.load_model(archive(tmp_path / "huge.keras", members))


def test_huge_declared_dataset_is_refused_before_reading(tmp_path):
    members = fixture_members("mlp")
    buffer = io.BytesIO(members["model.weights.h5"])
    with h5py.File(buffer, "a") as weights:
        del weights["layers/dense/vars/0"]
        weights.create_dataset("layers/dense/vars/0", shape=(100000, 100000), dtype="float32",
                               chunks=(1000, 1000), compression="gzip")
    members["model.weights.h5"] = buffer.getvalue()
    with pytest.raises(ModelFileError, match="compressed|shape"):
        modularcnn.load_model(archive(tmp_path / "shape.keras", members))


def test_weights_of_the_wrong_shape_are_refused_and_nothing_changes(tmp_path):
    net = Net(input_shape=(12,))
    net.add(Dense(9))
    net.add(Dense(4))
    before = net.get_weights()
    with pytest.raises(ModelFileError, match="shape"):
        net.load_weights(FIXTURES / "mlp.weights.h5")
    for old, new in zip(before, net.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_cli_convert_keras_to_our_format(tmp_path):
    out = tmp_path / "model.h5"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-m", "modularcnn.cli", "convert",
                           str(FIXTURES / "conv1d.keras"), str(out)],
                          capture_output=True, text=True, timeout=120, env=env, check=False)
    assert done.returncode == 0, done.stderr
    data = np.load(FIXTURES / "conv1d.npz")
    close_to_keras(modularcnn.load_model(out).predict(data["x"]), data["y"])
    assert modularcnn.saving.file_info(out)["kind"] == "model"
