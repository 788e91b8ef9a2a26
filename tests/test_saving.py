"""HDF5 persistence: whole-model and weights-only round trips, exact resumption, refusal of bad files,
custom objects, and atomic replacement (including SIGKILL in the middle of a save).

The oracle throughout is the network that was saved: a loaded copy must hold the same bits, predict
the same bits, and train on to the same bits. The file layout is also read with plain h5py.
"""

import json
import os
import signal
import sys
import time

import h5py
import numpy as np
import pytest

import modularcnn
from modularcnn import ModelFileError, Net, initializers, load_model, losses, optimizers, schedules
from modularcnn.layers import (
    BatchNormalization,
    Convolutional,
    Dense,
    Dropout,
    Flatten,
    Layer,
    MaxPooling,
    register_layer,
    registered_layers,
)
from modularcnn.layers import base as layers_base
from modularcnn.saving import file_info, hdf5_format

# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def same_bits(a, b):
    """Equal dtype, shape and bytes (NaN-safe, unlike ==)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def assert_same_weights(net_a, net_b):
    assert [layer.name for layer in net_a.layers] == [layer.name for layer in net_b.layers]
    for la, lb in zip(net_a.layers, net_b.layers):
        assert list(la.params) == list(lb.params), la.name
        for key in la.params:
            assert same_bits(la.params[key], lb.params[key]), f"{la.name}/{key}"


def small_cnn(seed=0, dtype="float32"):
    net = Net(input_shape=(8, 8, 1), seed=seed, dtype=dtype)
    net.add(Convolutional(4, 3, pad="same", activation="relu"))
    net.add(BatchNormalization())
    net.add(MaxPooling(2))
    net.add(Dropout(0.3))
    net.add(Flatten())
    net.add(Dense(3, activation="softmax"))
    return net


def toy_data(n=48, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8, 8, 1)).astype(np.float32)
    y = np.arange(n) % 3
    return x, y


# --------------------------------------------------------------------------------------------------
# Every registered layer type
# --------------------------------------------------------------------------------------------------

# Per built-in layer class: (per-sample input shape, factory taking the class). Adding a layer to the
# library without adding it here fails test_every_builtin_layer_has_a_factory.
FACTORIES = {
    "Convolutional": ((8, 8, 2), lambda c: c(3, 3, pad="same", activation="relu")),
    "Conv2D": ((8, 8, 2), lambda c: c(4, kernel_size=3, strides=2, activation="leakyrelu", groups=2,
                                      dilation_rate=(1, 2))),
    "Conv1D": ((10, 2), lambda c: c(3, 3)),
    "Conv3D": ((5, 5, 5, 2), lambda c: c(2, 2)),
    "Flatten": ((4, 4, 2), lambda c: c()),
    "Reshape": ((4, 4, 2), lambda c: c((8, 4))),
    "Activation": ((6,), lambda c: c("leakyrelu", alpha=0.2)),
    "Dropout": ((6,), lambda c: c(0.4, seed=11)),
    "Dense": ((6,), lambda c: c(4, activation={"name": "gelu", "approximate": True},
                                kernel_initializer="he_normal")),
    "BatchNormalization": ((6, 6, 3), lambda c: c(axis=2, momentum=0.5, center=False)),
    "MaxPooling": ((8, 8, 2), lambda c: c(2)),
    "AveragePooling": ((8, 8, 2), lambda c: c(3, stride=2, pad="same")),
    "MaxPooling2D": ((8, 8, 2), lambda c: c(2)),
    "MaxPool2D": ((8, 8, 2), lambda c: c(2)),
    "AveragePooling2D": ((8, 8, 2), lambda c: c(2)),
    "MaxPooling1D": ((10, 2), lambda c: c(2)),
    "AveragePooling1D": ((10, 2), lambda c: c(2)),
    "MaxPooling3D": ((4, 4, 4, 2), lambda c: c(2)),
    "AveragePooling3D": ((4, 4, 4, 2), lambda c: c(2)),
    "GlobalAveragePooling2D": ((5, 5, 3), lambda c: c()),
    "GlobalMaxPooling2D": ((5, 5, 3), lambda c: c()),
    "Residual": ((6, 6, 3), lambda c: c([Convolutional(4, 3, pad="same"), BatchNormalization(),
                                         Dropout(0.2)], shortcut="projection_bn")),
    "Conv2DTranspose": ((4, 4, 2), lambda c: c(3, 3, stride=2)),
    "Conv1DTranspose": ((5, 2), lambda c: c(3, 3, stride=2)),
    "Conv3DTranspose": ((3, 3, 3, 2), lambda c: c(2, 2, stride=2)),
    "UpSampling2D": ((4, 3, 2), lambda c: c((2, 3), interpolation="bilinear")),
    "UpSampling1D": ((5, 2), lambda c: c(2)),
    "UpSampling3D": ((2, 2, 2, 2), lambda c: c(2)),
    # Added to a Net, an InputLayer only states the input shape (no layer is added).
    "InputLayer": ((6,), lambda c: c(shape=(6,))),
    "ReLU": ((6,), lambda c: c(max_value=2.0, negative_slope=0.1, threshold=0.2)),
    "LeakyReLU": ((6,), lambda c: c(0.2)),
    "PReLU": ((4, 4, 3), lambda c: c("he_normal", shared_axes=[1, 2])),
    "ELU": ((6,), lambda c: c(0.7)),
    "Softmax": ((3, 4), lambda c: c(axis=1)),
    # Merge layers live in graphs: a Model around them, added to the Net as one (nested) layer.
    "Add": ((6,), lambda c: _merge_block(c())),
    "Subtract": ((6,), lambda c: _merge_block(c())),
    "Multiply": ((6,), lambda c: _merge_block(c())),
    "Average": ((6,), lambda c: _merge_block(c())),
    "Maximum": ((6,), lambda c: _merge_block(c())),
    "Minimum": ((6,), lambda c: _merge_block(c())),
    "Concatenate": ((6,), lambda c: _merge_block(c(axis=-1))),
    "Dot": ((6,), lambda c: _merge_block(c(axes=1, normalize=True))),
    "NestedModel": ((6,), lambda c: c(Net(input_shape=(6,), layers=[Dense(3), BatchNormalization()]))),
    "DepthwiseConv2D": ((7, 6, 3), lambda c: c(3, strides=2, padding="same", depth_multiplier=2,
                                               dilation_rate=1, activation="relu")),
    "DepthwiseConv1D": ((9, 2), lambda c: c(3, dilation_rate=2, depth_multiplier=3)),
    "SeparableConv2D": ((7, 6, 3), lambda c: c(4, (3, 2), padding="same", depth_multiplier=2)),
    "SeparableConv1D": ((9, 2), lambda c: c(3, 3, strides=2, use_bias=False)),
    "ZeroPadding1D": ((5, 2), lambda c: c((1, 2))),
    "ZeroPadding2D": ((4, 5, 2), lambda c: c(((1, 0), (2, 1)))),
    "ZeroPadding3D": ((2, 3, 2, 2), lambda c: c(1)),
    "Cropping1D": ((6, 2), lambda c: c((2, 1))),
    "Cropping2D": ((6, 5, 2), lambda c: c(((1, 0), (2, 1)))),
    "Cropping3D": ((4, 4, 3, 2), lambda c: c((1, 1, 0))),
    "Permute": ((3, 4, 2), lambda c: c((3, 1, 2))),
    "Rescaling": ((4, 3), lambda c: c([0.5, 1.0, 2.0], -0.25)),
    "LayerNormalization": ((4, 3, 2), lambda c: c(axis=[2, 3], epsilon=1e-4)),
    "GroupNormalization": ((4, 3, 6), lambda c: c(3, center=False)),
    "SpatialDropout1D": ((6, 4), lambda c: c(0.3)),
    "SpatialDropout2D": ((4, 4, 3), lambda c: c(0.3)),
    "SpatialDropout3D": ((3, 3, 3, 3), lambda c: c(0.3)),
    # A seeded layer draws from its own generator, saved with the model.
    "GaussianNoise": ((6,), lambda c: c(0.2, seed=5)),
    "GaussianDropout": ((6,), lambda c: c(0.3)),
    "GlobalAveragePooling1D": ((7, 3), lambda c: c()),
    "GlobalMaxPooling1D": ((7, 3), lambda c: c(keepdims=True)),
    "GlobalAveragePooling3D": ((3, 4, 3, 2), lambda c: c(keepdims=True)),
    "GlobalMaxPooling3D": ((3, 4, 3, 2), lambda c: c()),
    "GlobalAvgPool1D": ((7, 3), lambda c: c()),
    "GlobalAvgPool2D": ((5, 5, 3), lambda c: c(keepdims=True)),
    "GlobalAvgPool3D": ((3, 4, 3, 2), lambda c: c()),
    "GlobalMaxPool1D": ((7, 3), lambda c: c()),
    "GlobalMaxPool2D": ((5, 5, 3), lambda c: c()),
    "GlobalMaxPool3D": ((3, 4, 3, 2), lambda c: c()),
    "AvgPool1D": ((10, 2), lambda c: c(2)),
    "AvgPool2D": ((8, 8, 2), lambda c: c(3, strides=2, padding="same")),
    "AvgPool3D": ((4, 4, 4, 2), lambda c: c(2)),
    "MaxPool1D": ((10, 2), lambda c: c(3, strides=2)),
    "MaxPool3D": ((4, 4, 4, 2), lambda c: c(2)),
}


def _merge_block(merge):
    """A Model ``merge([Dense(3)(x), Dense(3)(x)])`` over a (6,) input."""
    from modularcnn import Input, Model

    x = Input((6,))
    return Model(x, merge([Dense(3)(x), Dense(3, activation="tanh")(x)]))


def builtin_layer_names():
    return sorted(name for name, cls in registered_layers().items()
                  if cls.__module__.startswith("modularcnn."))


def test_every_builtin_layer_has_a_factory():
    missing = [name for name in builtin_layer_names() if name not in FACTORIES]
    assert not missing, f"add these layers to FACTORIES in tests/test_saving.py: {missing}"


@pytest.mark.parametrize("class_name", builtin_layer_names())
def test_every_registered_layer_round_trips(tmp_path, class_name):
    if class_name not in FACTORIES:
        pytest.fail(f"no factory for {class_name}")
    input_shape, factory = FACTORIES[class_name]
    net = Net(input_shape=input_shape, seed=3)
    net.add(factory(registered_layers()[class_name]))
    if len(net.output_shape) > 1:
        net.add(Flatten())
    net.add(Dense(2))
    net.compile(optimizer=optimizers.SGD(0.05, momentum=0.9), loss="mse", metrics=["mae"])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5,) + input_shape).astype(np.float32)
    y = rng.normal(size=(5, 2)).astype(np.float32)
    net.train_on_batch(x, y)  # moves batch-norm statistics, draws dropout masks, fills momentum

    path = tmp_path / "model.h5"
    net.save(path)
    loaded = load_model(path)

    assert loaded.get_config() == net.get_config()
    assert_same_weights(net, loaded)
    assert same_bits(loaded.predict(x), net.predict(x))
    assert loaded.optimizer.get_config() == net.optimizer.get_config()
    state_a, state_b = net.optimizer.get_state(), loaded.optimizer.get_state()
    assert sorted(state_a) == sorted(state_b)
    assert all(same_bits(state_a[k], state_b[k]) for k in state_a)
    # The documented layout, read with plain h5py.
    with h5py.File(path, "r") as f:
        assert json.loads(f["weights"].attrs["layer_names"]) == [layer.name for layer in net.layers]
        for layer in net.layers:
            for key, value in layer.params.items():
                assert same_bits(f[f"weights/{layer.name}/{key}"][()], value)
    # Random state restored: training goes on identically (same dropout masks, same updates).
    assert same_bits(loaded.forward(x, training=True), net.forward(x, training=True))
    net.train_on_batch(x, y)
    loaded.train_on_batch(x, y)
    assert_same_weights(net, loaded)


def test_batch_norm_moving_statistics_survive(tmp_path):
    net = small_cnn()
    x, y = toy_data()
    net.fit(x, y, epochs=1, batch_size=16, verbose=0)
    bn = net.layers[1]
    assert not np.all(bn.params["moving_mean"] == 0) and not np.all(bn.params["moving_variance"] == 1)
    net.save(tmp_path / "m.h5")
    loaded_bn = load_model(tmp_path / "m.h5").layers[1]
    for key in ("moving_mean", "moving_variance", "gamma", "beta"):
        assert same_bits(loaded_bn.params[key], bn.params[key])
    assert loaded_bn.non_trainable_params == bn.non_trainable_params


def test_float64_network_keeps_its_dtype(tmp_path):
    net = small_cnn(dtype="float64")
    x, _ = toy_data(6)
    net.save(tmp_path / "m.h5")
    loaded = load_model(tmp_path / "m.h5")
    assert loaded.dtype == np.float64
    assert same_bits(loaded.predict(x), net.predict(x))


# --------------------------------------------------------------------------------------------------
# Exact resumption for every optimizer
# --------------------------------------------------------------------------------------------------

OPTIMIZERS = {
    "sgd_nesterov": lambda: optimizers.SGD(0.05, momentum=0.9, nesterov=True),
    "adam": lambda: optimizers.Adam(0.01),
    "adamw": lambda: optimizers.AdamW(0.01, weight_decay=0.01),
    "rmsprop": lambda: optimizers.RMSprop(0.01, momentum=0.5, centered=True),
    "adagrad": lambda: optimizers.Adagrad(0.05),
    "adadelta": lambda: optimizers.Adadelta(1.0),
    "adamax": lambda: optimizers.Adamax(0.01),
    "nadam": lambda: optimizers.Nadam(0.01),
    "lion": lambda: optimizers.Lion(0.003, weight_decay=0.01),
}


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_resumed_training_is_bit_identical(tmp_path, optimizer, shuffle):
    x, y = toy_data()
    a = small_cnn(seed=5)
    a.compile(optimizer=OPTIMIZERS[optimizer](), loss="cross_entropy", metrics=["acc"])
    a.fit(x, y, epochs=2, batch_size=16, shuffle=shuffle, verbose=0)

    b = small_cnn(seed=5)
    b.compile(optimizer=OPTIMIZERS[optimizer](), loss="cross_entropy", metrics=["acc"])
    b.fit(x, y, epochs=1, batch_size=16, shuffle=shuffle, verbose=0)
    b.save(tmp_path / "b.h5")
    del b
    resumed = load_model(tmp_path / "b.h5")
    history = resumed.fit(x, y, epochs=1, batch_size=16, shuffle=shuffle, verbose=0)

    assert_same_weights(a, resumed)
    assert resumed.optimizer.iterations == a.optimizer.iterations == 6
    state_a, state_r = a.optimizer.get_state(), resumed.optimizer.get_state()
    assert sorted(state_a) == sorted(state_r)
    assert all(same_bits(state_a[k], state_r[k]) for k in state_a)
    assert a.rng.bit_generator.state == resumed.rng.bit_generator.state
    assert list(history.history) == list(a.history.history)  # "acc" logged under the same name
    assert history.history["loss"] == a.history.history["loss"][1:]


def test_continuing_with_validation_split_and_augmentation_matches_the_original(tmp_path):
    from modularcnn.augment import ImageAugmenter

    x, y = toy_data()
    original = small_cnn(seed=7)
    original.compile(optimizer=optimizers.Adam(schedules.ExponentialDecay(0.01, 3, 0.5)))
    augment = ImageAugmenter(width_shift_range=0.2, noise_std=0.05)
    original.fit(x, y, epochs=1, batch_size=16, validation_split=0.25, augment=augment, verbose=0)
    original.save(tmp_path / "m.h5")
    loaded = load_model(tmp_path / "m.h5")
    assert loaded.optimizer.get_config() == original.optimizer.get_config()
    for net in (original, loaded):
        net.fit(x, y, epochs=2, batch_size=16, validation_split=0.25, augment=augment, verbose=0)
    assert_same_weights(original, loaded)
    assert loaded.history.history == original.history.history


def test_compile_settings_round_trip(tmp_path):
    net = small_cnn()
    net.compile(optimizer=optimizers.SGD(0.1, momentum=0.5, clipnorm=1.0),
                loss=losses.CategoricalCrossentropy(label_smoothing=0.1), metrics=["acc", "top_2_accuracy"])
    net.save(tmp_path / "m.h5")
    loaded = load_model(tmp_path / "m.h5")
    assert loaded.compiled
    assert losses.serialize(loaded.loss) == losses.serialize(net.loss)
    assert optimizers.serialize(loaded.optimizer) == optimizers.serialize(net.optimizer)
    assert [name for name, _ in loaded.metrics] == ["acc", "top_2_accuracy"]
    x, y = toy_data(12)
    assert loaded.evaluate(x, y, return_dict=True) == net.evaluate(x, y, return_dict=True)


def test_uncompiled_model_loads_uncompiled(tmp_path):
    net = small_cnn()
    net.save(tmp_path / "m.h5")
    loaded = load_model(tmp_path / "m.h5")
    assert not loaded.compiled and loaded.optimizer is None
    with h5py.File(tmp_path / "m.h5", "r") as f:
        assert "optimizer" not in f and "training_config" not in f.attrs


def test_file_records_versions_and_epochs(tmp_path):
    net = small_cnn()
    x, y = toy_data(16)
    net.fit(x, y, epochs=3, batch_size=16, verbose=0, initial_epoch=1)
    net.save(tmp_path / "m.h5")
    info = file_info(tmp_path / "m.h5")
    assert info["epoch"] == 3 and info["kind"] == "model" and info["compiled"]
    assert info["format_version"] == hdf5_format.FORMAT_VERSION
    assert info["library_version"] == modularcnn.__version__
    with h5py.File(tmp_path / "m.h5", "r") as f:
        rng = json.loads(f.attrs["rng_state"])
    # The 128-bit PCG64 integers survive as decimal strings.
    assert int(rng["state"]["state"]) == net.rng.bit_generator.state["state"]["state"]
    assert int(rng["state"]["inc"]) == net.rng.bit_generator.state["state"]["inc"]


# --------------------------------------------------------------------------------------------------
# Weights only
# --------------------------------------------------------------------------------------------------


def trained_cnn():
    net = small_cnn(seed=2)
    net.compile("adam")
    x, y = toy_data(16)
    net.fit(x, y, epochs=1, batch_size=8, verbose=0)
    return net


def test_weights_round_trip_in_place(tmp_path):
    source = trained_cnn()
    source.save_weights(tmp_path / "w.h5")
    target = small_cnn(seed=99)
    target.compile("adam")
    x, y = toy_data(16)
    target.fit(x, y, epochs=1, batch_size=8, verbose=0)  # optimizer state keyed by "layer/param"
    arrays_before = {k: id(v) for k, v in target.trainable_params().items()}
    slots_before = target.optimizer.get_state()

    target.load_weights(tmp_path / "w.h5")

    assert_same_weights(source, target)
    assert {k: id(v) for k, v in target.trainable_params().items()} == arrays_before
    slots_after = target.optimizer.get_state()
    assert all(same_bits(slots_before[k], slots_after[k]) for k in slots_before)
    target.train_on_batch(x, y)  # the state still fits the arrays
    with h5py.File(tmp_path / "w.h5", "r") as f:
        assert bytes(f.attrs["kind"]) == b"weights" and "model_config" not in f.attrs


def test_weights_load_from_a_whole_model_file(tmp_path):
    source = trained_cnn()
    source.save(tmp_path / "m.h5")
    target = small_cnn(seed=8)
    target.load_weights(tmp_path / "m.h5")
    assert_same_weights(source, target)


def test_renamed_layers_fall_back_to_order(tmp_path):
    source = trained_cnn()
    source.save_weights(tmp_path / "w.h5")
    target = Net(input_shape=(8, 8, 1), seed=4)
    target.add(Convolutional(4, 3, pad="same", activation="relu", name="features"))
    target.add(BatchNormalization(name="norm"))
    target.add(MaxPooling(2))
    target.add(Flatten())
    target.add(Dense(3, activation="softmax", name="classifier"))
    target.load_weights(tmp_path / "w.h5")
    for a, b in ((0, 0), (1, 1), (5, 4)):
        for key in source.layers[a].params:
            assert same_bits(source.layers[a].params[key], target.layers[b].params[key])


def test_float64_weights_load_into_float32_network(tmp_path):
    wide = small_cnn(seed=1, dtype="float64")
    wide.save_weights(tmp_path / "w.h5")
    narrow = small_cnn(seed=2)
    narrow.load_weights(tmp_path / "w.h5")
    for a, b in zip(wide.get_weights(), narrow.get_weights()):
        assert b.dtype == np.float32 and np.array_equal(b, a.astype(np.float32))


def test_shape_mismatch_names_the_layer_and_changes_nothing(tmp_path):
    source = trained_cnn()
    source.save_weights(tmp_path / "w.h5")
    target = Net(input_shape=(8, 8, 1), seed=4)
    target.add(Convolutional(4, 3, pad="same", activation="relu"))
    target.add(BatchNormalization())
    target.add(MaxPooling(2))
    target.add(Flatten())
    target.add(Dense(5, activation="softmax"))  # 5 units, the file has 3
    before = target.get_weights()
    with pytest.raises(ValueError) as info:
        target.load_weights(tmp_path / "w.h5")
    message = str(info.value)
    assert "'dense'" in message and "(64, 3)" in message and "(64, 5)" in message
    assert all(same_bits(a, b) for a, b in zip(before, target.get_weights()))


def test_layer_count_mismatch_changes_nothing(tmp_path):
    source = trained_cnn()
    source.save_weights(tmp_path / "w.h5")
    target = Net(input_shape=(8, 8, 1), seed=4)
    target.add(Convolutional(4, 3, pad="same", activation="relu", name="c"))
    target.add(Flatten())
    target.add(Dense(3, name="d"))
    before = target.get_weights()
    with pytest.raises(ValueError, match=r"file has 3 layers with weights .* network has 2"):
        target.load_weights(tmp_path / "w.h5")
    assert all(same_bits(a, b) for a, b in zip(before, target.get_weights()))


# --------------------------------------------------------------------------------------------------
# Bad files
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def saved_model(tmp_path):
    net = trained_cnn()
    path = tmp_path / "m.h5"
    net.save(path)
    return net, path


def rewrite(path, **changes):
    """Re-write ``path`` through the writer (so with a valid checksum) with some contents replaced."""
    contents = hdf5_format.read_file(path)
    for key, value in changes.items():
        setattr(contents, key, value)
    hdf5_format.write_file(path, contents)


def test_missing_path_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "nope.h5")
    with pytest.raises(FileNotFoundError):
        small_cnn().load_weights(tmp_path / "nope.h5")


@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b"this is not an HDF5 file\n" * 10, "not an HDF5 file"),
])
def test_empty_or_foreign_files_are_refused(tmp_path, content, message):
    path = tmp_path / "bad.h5"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match=message):
        load_model(path)


def test_plain_hdf5_file_is_not_a_model(tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["data"] = np.arange(3)
    with pytest.raises(ModelFileError, match="not a modularcnn model file"):
        load_model(tmp_path / "other.h5")


def test_truncated_file_is_refused(saved_model):
    _, path = saved_model
    data = path.read_bytes()
    for keep in (len(data) // 2, len(data) - 1, 100):
        path.write_bytes(data[:keep])
        with pytest.raises(ModelFileError):
            load_model(path)


def test_flipped_byte_in_weight_data_fails_the_checksum(saved_model):
    _, path = saved_model
    with h5py.File(path, "r") as f:
        offset = f["weights/dense/kernel"].id.get_offset()
    data = bytearray(path.read_bytes())
    data[offset + 5] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="checksum"):
        load_model(path)
    with pytest.raises(ModelFileError, match="checksum"):
        small_cnn().load_weights(path)


def test_future_format_version_asks_for_an_upgrade(saved_model):
    _, path = saved_model
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = np.int64(hdf5_format.FORMAT_VERSION + 1)
        f.attrs["library_version"] = "9.0.0"
    with pytest.raises(ModelFileError, match=r"newer modularcnn \(9\.0\.0.*upgrade"):
        load_model(path)


@pytest.mark.parametrize("victim", ["weights", "weights/dense", "weights/dense/kernel", "optimizer",
                                    "optimizer/state/m/dense/kernel", "optimizer/iterations"])
def test_missing_group_or_dataset_is_named(saved_model, victim):
    _, path = saved_model
    with h5py.File(path, "r+") as f:
        del f[victim]
    with pytest.raises(ModelFileError, match=victim.split("/")[-1]):
        load_model(path)


@pytest.mark.parametrize("attribute", ["model_config", "rng_state", "checksum", "kind", "format"])
def test_missing_attribute_is_refused(saved_model, attribute):
    _, path = saved_model
    with h5py.File(path, "r+") as f:
        del f.attrs[attribute]
    with pytest.raises(ModelFileError):
        load_model(path)


@pytest.mark.parametrize("replacement, message", [
    (np.arange(192, dtype=np.int64).reshape(64, 3), "dtype int64"),
    (np.array([b"abc"] * 3), "dtype"),
    (np.ones((64, 3), dtype=bool), "dtype bool"),
])
def test_wrong_dtype_dataset_is_refused(saved_model, replacement, message):
    _, path = saved_model
    with h5py.File(path, "r+") as f:
        del f["weights/dense/kernel"]
        f["weights/dense/kernel"] = replacement
    with pytest.raises(ModelFileError, match=message):
        load_model(path)
    with pytest.raises(ModelFileError, match=message):
        small_cnn().load_weights(path)


def test_wrong_shape_is_refused_before_assignment_even_with_a_valid_checksum(saved_model):
    _, path = saved_model
    contents = hdf5_format.read_file(path)
    contents.weights["dense"]["kernel"] = np.zeros((64, 4), np.float32)
    hdf5_format.write_file(path, contents)
    with pytest.raises(ModelFileError, match=r"'dense'.*'kernel'.*\(64, 4\).*\(64, 3\)"):
        load_model(path)


def test_float64_arrays_for_a_float32_model_are_refused(saved_model):
    _, path = saved_model
    contents = hdf5_format.read_file(path)
    contents.weights["dense"]["kernel"] = contents.weights["dense"]["kernel"].astype(np.float64)
    hdf5_format.write_file(path, contents)
    with pytest.raises(ModelFileError, match="float64"):
        load_model(path)


def test_optimizer_state_that_fits_no_weight_is_refused(saved_model):
    _, path = saved_model
    contents = hdf5_format.read_file(path)
    contents.optimizer_state["m/dense/kernel"] = np.zeros((2, 2), np.float32)
    hdf5_format.write_file(path, contents)
    with pytest.raises(ModelFileError, match="m/dense/kernel"):
        load_model(path)


@pytest.mark.parametrize("config_change, message", [
    (lambda c: c.update(layers="nope"), "no list of layers"),
    (lambda c: c["layers"].__setitem__(0, ["x"]), "layer entry 0"),
    (lambda c: c["layers"][0]["config"].update(filters=-3), "cannot rebuild"),
    (lambda c: c["layers"][0].update(class_name="__import__"), "unknown layer type '__import__'"),
    (lambda c: c.update(dtype="int32"), "cannot rebuild"),
])
def test_bad_architecture_json_is_refused(saved_model, config_change, message):
    _, path = saved_model
    contents = hdf5_format.read_file(path)
    config_change(contents.model_config)
    hdf5_format.write_file(path, contents)
    with pytest.raises(ModelFileError, match=message):
        load_model(path)


@pytest.mark.parametrize("rng_state", [
    {"bit_generator": "MT19937", "state": {}},
    {"bit_generator": "PCG64", "state": {"state": "12", "inc": "x"}, "has_uint32": 0, "uinteger": "0"},
    {"bit_generator": "PCG64", "state": {"state": str(2**128), "inc": "1"}, "has_uint32": 0,
     "uinteger": "0"},
])
def test_bad_rng_state_is_refused(saved_model, rng_state):
    _, path = saved_model
    rewrite(path, rng_state=rng_state)
    with pytest.raises(ModelFileError, match="rng_state"):
        load_model(path)


@pytest.mark.parametrize("link", ["soft", "external"])
def test_links_to_elsewhere_are_not_followed(saved_model, link):
    _, path = saved_model
    other = path.parent / "other.h5"
    with h5py.File(other, "w") as f:
        f["kernel"] = np.zeros((64, 3), np.float32)
    with h5py.File(path, "r+") as f:
        f["spare"] = f["weights/dense/kernel"][()]
        del f["weights/dense/kernel"]
        f["weights/dense/kernel"] = (h5py.SoftLink("/spare") if link == "soft"
                                     else h5py.ExternalLink(str(other), "/kernel"))
    with pytest.raises(ModelFileError, match=r"/weights/dense/kernel is a (Soft|External)Link"):
        load_model(path)


def test_data_stored_outside_the_file_is_refused(saved_model):
    _, path = saved_model
    raw = path.parent / "raw.bin"
    raw.write_bytes(np.zeros(192, np.float32).tobytes())
    with h5py.File(path, "r+") as f:
        del f["weights/dense/kernel"]
        f.create_dataset("weights/dense/kernel", shape=(64, 3), dtype="f4",
                         external=[(str(raw), 0, 192 * 4)])
    with pytest.raises(ModelFileError, match="outside the file"):
        load_model(path)


def test_weights_file_is_not_a_model(tmp_path):
    small_cnn().save_weights(tmp_path / "w.h5")
    with pytest.raises(ModelFileError, match="weights only"):
        load_model(tmp_path / "w.h5")


def test_text_attributes_read_the_same_as_str_or_bytes(saved_model):
    """h5py returns fixed-length strings as bytes and variable-length ones as str: both load."""
    net, path = saved_model
    with h5py.File(path, "r+") as f:
        for obj in [f, f["weights"], f["optimizer"]] + [f["weights"][n] for n in f["weights"]]:
            for name, value in list(obj.attrs.items()):
                if isinstance(value, bytes):
                    obj.attrs[name] = value.decode("utf-8")  # now a variable-length str attribute
        assert isinstance(f.attrs["model_config"], str)
    loaded = load_model(path)
    assert_same_weights(net, loaded)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_reading_ignores_hdf5_file_locks(saved_model):
    """A file another process holds open for writing (locked by HDF5) still loads."""
    net, path = saved_model
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: hold a write lock until told to stop
        try:
            with h5py.File(path, "r+", locking=True):
                os.write(ready_w, b"1")
                os.read(done_r, 1)
        finally:
            os._exit(0)
    try:
        assert os.read(ready_r, 1) == b"1"
        if os.environ.get("HDF5_USE_FILE_LOCKING", "").upper() != "FALSE":
            with pytest.raises(OSError):  # the default, locking open is refused: the lock is real
                h5py.File(path, "r", locking=True).close()
        assert_same_weights(net, load_model(path))
    finally:
        os.write(done_w, b"1")
        os.waitpid(pid, 0)


# --------------------------------------------------------------------------------------------------
# Custom objects
# --------------------------------------------------------------------------------------------------


@register_layer
class ScaleForSavingTest(Layer):
    """Multiplies by a learned per-feature scale."""

    def build(self, input_shape):
        super().build(input_shape)
        self.add_param("scale", (self.input_shape[-1],), "ones")

    def forward(self, x, training=False):
        self._x = x
        return x * self.params["scale"]

    def backward(self, dy):
        self.grads["scale"] = (dy * self._x).reshape(-1, dy.shape[-1]).sum(axis=0)
        return dy * self.params["scale"]


class UnregisteredShift(Layer):
    def build(self, input_shape):
        super().build(input_shape)
        self.add_param("shift", (self.input_shape[-1],), "zeros")

    def forward(self, x, training=False):
        return x + self.params["shift"]


def test_registered_custom_layer_round_trips(tmp_path):
    net = Net(input_shape=(4,), seed=0)
    net.add(ScaleForSavingTest())
    net.add(Dense(2))
    net.layers[0].params["scale"][:] = [1.5, -2.0, 0.25, 3.0]
    net.save(tmp_path / "m.h5")
    loaded = load_model(tmp_path / "m.h5")
    assert type(loaded.layers[0]) is ScaleForSavingTest
    assert_same_weights(net, loaded)


def test_unregistered_layer_needs_custom_objects(tmp_path):
    net = Net(input_shape=(4,), seed=0)
    net.add(UnregisteredShift())
    net.layers[0].params["shift"][:] = 7
    net.save(tmp_path / "m.h5")
    with pytest.raises(ModelFileError, match="unknown layer type 'UnregisteredShift'.*custom_objects"):
        load_model(tmp_path / "m.h5")
    loaded = load_model(tmp_path / "m.h5", custom_objects={"UnregisteredShift": UnregisteredShift})
    assert_same_weights(net, loaded)


def test_layer_unregistered_since_saving_is_an_unknown_type(tmp_path, monkeypatch):
    net = Net(input_shape=(4,), seed=0)
    net.add(ScaleForSavingTest())
    net.save(tmp_path / "m.h5")
    monkeypatch.delitem(layers_base._REGISTRY, "ScaleForSavingTest")
    with pytest.raises(ModelFileError, match="unknown layer type 'ScaleForSavingTest'"):
        load_model(tmp_path / "m.h5")


def my_initializer(shape, rng, dtype):
    return np.full(shape, 0.5, dtype=dtype)


def test_plain_function_initializer_becomes_a_placeholder(tmp_path):
    net = Net(input_shape=(3,), seed=0)
    net.add(Dense(2, kernel_initializer=my_initializer))
    net.layers[0].params["kernel"][:] = [[1, 2], [3, 4], [5, 6]]
    assert net.get_config()["layers"][0]["config"]["kernel_initializer"]["class_name"] == "function"
    net.save(tmp_path / "m.h5")
    loaded = load_model(tmp_path / "m.h5")
    assert_same_weights(net, loaded)  # the saved weights, not the placeholder's zeros
    assert isinstance(loaded.layers[0].kernel_initializer, initializers.Zeros)
    again = load_model(tmp_path / "m.h5", custom_objects={"my_initializer": my_initializer})
    assert again.layers[0].kernel_initializer is my_initializer
    assert_same_weights(net, again)


class HalfInitializer(initializers.Initializer):
    """An Initializer class the library does not know by name."""

    def __call__(self, shape, rng=None, dtype=np.float32):
        return np.full(shape, 0.5, dtype=dtype)


def test_custom_initializer_class_comes_from_custom_objects(tmp_path):
    net = Net(input_shape=(3,), seed=0)
    net.add(Dense(2, bias_initializer=HalfInitializer()))
    net.save(tmp_path / "m.h5")
    placeholder = load_model(tmp_path / "m.h5")
    assert isinstance(placeholder.layers[0].bias_initializer, initializers.Zeros)
    assert_same_weights(net, placeholder)  # the file's 0.5s, not zeros
    rebuilt = load_model(tmp_path / "m.h5", custom_objects={"HalfInitializer": HalfInitializer})
    assert type(rebuilt.layers[0].bias_initializer) is HalfInitializer
    assert rebuilt.get_config() == net.get_config()


class HalvingSGD(optimizers.SGD):
    """An optimizer the library does not know by name."""


class DoubledMSE(losses.MeanSquaredError):
    def _value_and_gradient(self, y_true, y_pred):
        value, grad = super()._value_and_gradient(y_true, y_pred)
        return 2 * value, 2 * grad


def test_custom_optimizer_and_loss_come_from_custom_objects(tmp_path):
    net = Net(input_shape=(3,), seed=0)
    net.add(Dense(2))
    net.compile(optimizer=HalvingSGD(0.1, momentum=0.5), loss=DoubledMSE(), metrics=[])
    x = np.ones((4, 3), np.float32)
    y = np.zeros((4, 2), np.float32)
    net.train_on_batch(x, y)
    net.save(tmp_path / "m.h5")
    with pytest.raises(ModelFileError, match="HalvingSGD.*custom_objects"):
        load_model(tmp_path / "m.h5")
    loaded = load_model(tmp_path / "m.h5",
                        custom_objects={"HalvingSGD": HalvingSGD, "DoubledMSE": DoubledMSE})
    assert type(loaded.optimizer) is HalvingSGD and type(loaded.loss) is DoubledMSE
    net.train_on_batch(x, y)
    loaded.train_on_batch(x, y)
    assert_same_weights(net, loaded)


def test_custom_objects_must_be_the_right_kind(tmp_path):
    net = Net(input_shape=(3,), seed=0)
    net.add(UnregisteredShift())
    net.save(tmp_path / "m.h5")
    with pytest.raises(ModelFileError, match="not a Layer class"):
        load_model(tmp_path / "m.h5", custom_objects={"UnregisteredShift": print})


# --------------------------------------------------------------------------------------------------
# Atomic replacement
# --------------------------------------------------------------------------------------------------


def test_interrupted_save_keeps_the_old_file(tmp_path, monkeypatch):
    old = trained_cnn()
    path = tmp_path / "m.h5"
    old.save(path)
    new = small_cnn(seed=42)
    calls = {"n": 0}
    original_array = hdf5_format._Writer.array

    def interrupting_array(self, group, name, array):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original_array(self, group, name, array)

    monkeypatch.setattr(hdf5_format._Writer, "array", interrupting_array)
    with pytest.raises(KeyboardInterrupt):
        new.save(path)
    assert calls["n"] == 3
    assert os.listdir(tmp_path) == ["m.h5"]  # no temporary left behind
    assert_same_weights(old, load_model(path))


def test_opening_falls_back_where_h5py_has_no_locking_argument(saved_model, monkeypatch):
    net, path = saved_model
    real_file = h5py.File
    calls = []

    def old_h5py_file(*args, **kwargs):
        calls.append("locking" in kwargs)
        if "locking" in kwargs:
            raise TypeError("__init__() got an unexpected keyword argument 'locking'")
        return real_file(*args, **kwargs)

    monkeypatch.setattr(h5py, "File", old_h5py_file)
    assert_same_weights(net, load_model(path))
    net.save(path)
    assert calls == [True, False, True, False]


def test_saved_file_gets_ordinary_permissions(tmp_path):
    path = tmp_path / "m.h5"
    small_cnn().save(path)
    umask = os.umask(0)
    os.umask(umask)
    assert (os.stat(path).st_mode & 0o777) == (0o666 & ~umask)
    os.chmod(path, 0o640)
    small_cnn().save(path)
    assert (os.stat(path).st_mode & 0o777) == 0o640


def _kill_test_model():
    net = Net(input_shape=(1024,), seed=0)
    net.add(Dense(1024))
    net.add(Dense(1024))  # two 4 MiB kernels: a save takes tens of milliseconds
    return net


def _stamp(net, version):
    for layer in net.layers:
        for value in layer.params.values():
            value[...] = version


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_sigkill_during_save_leaves_the_old_or_the_new_file(tmp_path):
    """A child saves versions 1, 2, 3, ... to one path in a loop; SIGKILL it at varied moments and
    check that the file is always a complete version, never a torn mixture or a damaged file."""
    path = tmp_path / "m.h5"
    net = _kill_test_model()
    _stamp(net, 0)
    net.save(path)
    started = time.perf_counter()
    net.save(path)
    save_seconds = time.perf_counter() - started
    rng = np.random.default_rng(0)
    seen_versions, torn_temporaries = [], 0
    for kill in range(16):
        pid = os.fork()
        if pid == 0:  # the child: save until killed; never return into pytest
            try:
                for version in range(1, 100):
                    _stamp(net, version + 100 * kill)
                    net.save(path)
            finally:
                os._exit(1)
        time.sleep(rng.uniform(0.2, 3.5) * save_seconds)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        temporaries = [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
        torn_temporaries += len(temporaries)
        for name in temporaries:
            os.unlink(tmp_path / name)
        loaded = load_model(path)
        version = float(loaded.layers[0].params["kernel"][0, 0])
        for layer in loaded.layers:
            for value in layer.params.values():
                assert np.all(value == version), "a mixture of two saves"
        previous = seen_versions[-1] if seen_versions else 0
        assert version == previous or 100 * kill < version < 100 * (kill + 1)
        seen_versions.append(version)
    # The kills did land during saves (the child spends nearly all its time saving).
    assert torn_temporaries > 0, (seen_versions, save_seconds)
    print(f"save {save_seconds * 1e3:.0f} ms; versions {seen_versions}; {torn_temporaries} torn",
          file=sys.stderr)
