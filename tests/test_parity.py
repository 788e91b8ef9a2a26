"""The README's "Coming from Keras" table, kept honest: each row is data here with a small check
that the modularcnn column is true, and the README must hold exactly the table these rows make.

After changing a row, print the table with ``python tests/test_parity.py`` and paste it into the
README between the ``parity`` markers.
"""

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN, END = "<!-- parity:begin -->", "<!-- parity:end -->"


def keras():
    from modularcnn import keras as k  # noqa: PLC0415
    return k


def tiny(**kwargs):
    k = keras()
    return k.Sequential([k.Input((6, 6, 1)), k.layers.Conv2D(2, 3, activation="relu"),
                         k.layers.MaxPooling2D(2), k.layers.Flatten(),
                         k.layers.Dense(3, activation="softmax")], seed=0, **kwargs)


def batch(n=8):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 6, 6, 1)).astype(np.float32), np.arange(n) % 3


def check_import():
    k = keras()
    assert k.layers.Conv2D and k.utils.to_categorical and k.datasets.mnist.load_data
    assert k.models.Sequential is k.Sequential and k.optimizers.Adam and k.callbacks.EarlyStopping


def check_sequential():
    net = tiny(name="t")
    assert net.name == "t" and net.input_shape == (6, 6, 1) and net.output_shape == (3,)


def check_add_pop():
    k = keras()
    net = tiny()
    layer = net.pop()
    net.add(k.layers.Dense(3, activation="softmax"))
    assert isinstance(layer, k.layers.Dense) and net.output_shape == (3,)


def check_get_layer():
    net = tiny()
    assert net.get_layer(index=-1) is net.get_layer(name="dense")


def check_summary():
    lines = []
    tiny().summary(line_length=70, expand_nested=True, show_trainable=True, print_fn=lines.append)
    assert lines[0].splitlines()[1] == "=" * 70 and "Trainable" in lines[0]


def check_compile_fit():
    net = tiny()
    net.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    x, y = batch(20)
    history = net.fit(x, y, batch_size=4, epochs=1, validation_split=0.2, verbose=0,
                      class_weight={0: 2.0})
    assert {"loss", "val_accuracy"} <= set(history.history)


def check_validation_split():
    from modularcnn.training.data import validation_split_indices  # noqa: PLC0415
    y = np.repeat([0, 1], 10)
    _, held_out = validation_split_indices(y, 0.2, np.random.default_rng(0))
    assert sorted(np.bincount(y[held_out])) == [2, 2]  # stratified, not the last rows


def check_evaluate():
    net = tiny()
    net.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = batch()
    score = net.evaluate(x, y, verbose=0)
    assert isinstance(score, list) and len(score) == 2
    assert net.evaluate(x, y, return_dict=True) == dict(zip(["loss", "accuracy"], score))


def check_predict():
    net = tiny()
    x, _ = batch()
    out = net.predict(x, batch_size=3, verbose=0)
    np.testing.assert_allclose(net.predict_on_batch(x), out, rtol=1e-6)
    np.testing.assert_allclose(net(x), out, rtol=1e-6)


def check_on_batch():
    net = tiny()
    x, y = batch()
    assert set(net.train_on_batch(x, y)) == {"loss", "accuracy"}
    assert set(net.test_on_batch(x, y)) == {"loss", "accuracy"}


def check_weights():
    net = tiny()
    dense = net.get_layer("dense")
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel * 0, bias])
    assert not dense.params["kernel"].any() and len(net.get_weights()) == 4
    assert len(net.trainable_weights) == 4 and net.non_trainable_weights == []


def check_json():
    from modularcnn import models  # noqa: PLC0415
    net = tiny()
    assert models.model_from_json(net.to_json()).get_config() == net.get_config()
    assert json.loads(net.to_json())["class_name"] == "Net"


def check_clone():
    from modularcnn import models  # noqa: PLC0415
    net = tiny()
    clone = models.clone_model(net)
    assert clone.get_config() == net.get_config() and clone.weights[0] is not net.weights[0]


def check_keras_files(tmp_path):
    from modularcnn import load_model  # noqa: PLC0415
    net = tiny()
    net.save(tmp_path / "m.keras")
    x, _ = batch()
    np.testing.assert_allclose(load_model(tmp_path / "m.keras").predict(x), net.predict(x), rtol=1e-6)


def check_functional():
    k = keras()
    inputs = k.Input((4,))
    model = k.Model(inputs, k.layers.Dense(2)(k.layers.Dense(3, activation="relu")(inputs)))
    assert model.predict(np.ones((2, 4))).shape == (2, 2)


def check_utils():
    k = keras()
    np.testing.assert_array_equal(k.utils.to_categorical([0, 2], 3), [[1, 0, 0], [0, 0, 1]])
    np.testing.assert_allclose(np.linalg.norm(k.utils.normalize(np.array([[3.0, 4.0]])), axis=1), 1)


def check_metrics():
    k = keras()
    net = tiny()
    net.compile(loss="sparse_categorical_crossentropy",
                metrics=[k.metrics.Precision(), k.metrics.Recall(), k.metrics.AUC(),
                         k.metrics.F1Score(average="macro")])
    logs = net.evaluate(*batch(), return_dict=True)
    assert {"precision", "recall", "auc", "f1_score"} <= set(logs)
    assert k.metrics.F1Score().average == "macro"
    with pytest.raises(ValueError, match="average"):
        k.metrics.F1Score(average=None)


def check_callbacks(tmp_path):
    k = keras()
    net = tiny()
    seen = []
    callbacks = [k.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(epoch)),
                 k.callbacks.BackupAndRestore(tmp_path / "backup"),
                 k.callbacks.ModelCheckpoint(str(tmp_path / "b{batch}.h5"), save_freq=2),
                 k.callbacks.EarlyStopping(monitor="loss", patience=5),
                 k.callbacks.CSVLogger(str(tmp_path / "log.csv")),
                 k.callbacks.ReduceLROnPlateau(monitor="loss"), k.callbacks.TerminateOnNaN()]
    net.fit(*batch(), batch_size=4, epochs=1, verbose=0, callbacks=callbacks)
    assert seen == [0] and os.path.isfile(tmp_path / "b2.h5")
    with pytest.raises(ValueError, match="save_freq"):
        k.callbacks.BackupAndRestore(tmp_path, save_freq=10)


def check_layers():
    k = keras()
    layers = [k.layers.Conv2D(2, 3, dilation_rate=2, padding="same"), k.layers.DepthwiseConv2D(3),
              k.layers.SeparableConv2D(4, 3, padding="same"), k.layers.BatchNormalization(),
              k.layers.LayerNormalization(), k.layers.SpatialDropout2D(0.1), k.layers.ReLU(max_value=6),
              k.layers.ZeroPadding2D(1), k.layers.Cropping2D(1), k.layers.GlobalAveragePooling2D()]
    net = k.Sequential([k.Input((9, 9, 2))] + layers)
    assert net.predict(np.ones((1, 9, 9, 2))).shape == (1, 4)


def check_optimizers():
    k = keras()
    for name in ("sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta", "adamax", "nadam", "lion"):
        assert isinstance(k.optimizers.get(name), k.optimizers.Optimizer)
    k.optimizers.Adam(learning_rate=k.optimizers.schedules.CosineDecay(0.01, 100))


def check_regularizers():
    k = keras()
    net = k.Sequential([k.Input((3,)), k.layers.Dense(2, kernel_regularizer=k.regularizers.l2(0.01),
                                                      kernel_constraint=k.constraints.MaxNorm(1.0))])
    net.compile(loss="mse", metrics=[])
    assert net.evaluate(np.ones((2, 3)), np.zeros((2, 2))) >= 0


#: (feature, Keras, modularcnn, check). The modularcnn column says "same" or how it differs.
ROWS = [
    ("Imports", "`import keras`, `from keras import layers`",
     "`from modularcnn import keras`, `from modularcnn.keras import layers`", check_import),
    ("Sequential model", "`keras.Sequential([keras.Input(shape), ...], name=)`",
     "same (`Sequential` is `Net`)", check_sequential),
    ("Growing and shrinking", "`model.add(layer)`, `model.pop()`", "same", check_add_pop),
    ("Finding layers", "`model.get_layer(name=, index=)`", "same", check_get_layer),
    ("Summary", "`summary(line_length=, positions=, expand_nested=, show_trainable=)`",
     "same (no `layer_range`)", check_summary),
    ("Compile and fit", "`compile(optimizer, loss, metrics)`, `fit(batch_size=, epochs=, "
     "validation_split=, callbacks=, class_weight=, sample_weight=)`", "same", check_compile_fit),
    ("Validation split", "the last rows", "a seeded random sample stratified by class",
     check_validation_split),
    ("Evaluate", "`evaluate(...)` -> `[loss, metric, ...]`; `return_dict=True` -> dict",
     "same (the loss alone without metrics, as Keras)", check_evaluate),
    ("Predict", "`predict(x, batch_size=, verbose=)`, `predict_on_batch(x)`, `model(x)`",
     "same (`model(x)` returns a NumPy array)", check_predict),
    ("Single batches", "`train_on_batch`/`test_on_batch` -> list", "a dict `{\"loss\": ..., ...}`",
     check_on_batch),
    ("Weights", "`get_weights()`/`set_weights()` on models and layers", "same (Keras's order and shapes)",
     check_weights),
    ("Trainable weights", "`trainable_weights`, `non_trainable_weights`", "same (NumPy arrays)",
     check_weights),
    ("Architecture as JSON", "`to_json()`, `keras.models.model_from_json(s)`",
     "same calls; modularcnn's own JSON (Keras model files open with `load_model`)", check_json),
    ("Cloning", "`keras.models.clone_model(model, clone_function=)`", "same (no `input_tensors`)",
     check_clone),
    ("Model files", "`model.save(\"m.keras\")`, `keras.models.load_model`",
     "same (`.keras` and Keras `.h5` read; our `.h5` holds the full training state)", check_keras_files),
    ("Functional API", "`keras.Model(inputs, outputs)`", "same", check_functional),
    ("Utilities", "`keras.utils.to_categorical`, `normalize`", "same", check_utils),
    ("Stateful metrics", "`Precision`, `Recall`, `AUC`, `F1Score`",
     "same, but `F1Score` averages (`\"macro\"` by default; Keras's per-class `None` is refused: a log "
     "holds one number) and `AUC` has no `multi_label=True`", check_metrics),
    ("Callbacks", "`LambdaCallback`, `BackupAndRestore`, `ModelCheckpoint(save_freq=)`, "
     "`EarlyStopping`, `CSVLogger`, `ReduceLROnPlateau`, `TerminateOnNaN`",
     "same; `BackupAndRestore(save_freq=\"epoch\")` only", check_callbacks),
    ("Image layers", "`Conv2D(dilation_rate=, groups=)`, `DepthwiseConv2D`, `SeparableConv2D`, "
     "normalization, padding/cropping, spatial dropout, activation layers", "same", check_layers),
    ("Optimizers and schedules", "`SGD` ... `Lion`, `keras.optimizers.schedules`", "same",
     check_optimizers),
    ("Regularizers and constraints", "`kernel_regularizer=l2(...)`, `kernel_constraint=MaxNorm(...)`",
     "same", check_regularizers),
]


def table():
    """The README table (markdown) the rows make."""
    lines = ["| Feature | Keras | modularcnn |", "| --- | --- | --- |"]
    lines += [f"| {feature} | {ours_keras} | {ours} |" for feature, ours_keras, ours, _ in ROWS]
    return "\n".join(lines)


@pytest.mark.parametrize("row", ROWS, ids=[row[0] for row in ROWS])
def test_each_row_holds(row, tmp_path):
    check = row[3]
    if "tmp_path" in check.__code__.co_varnames[:check.__code__.co_argcount]:
        check(tmp_path)
    else:
        check()


def test_the_readme_table_is_the_generated_one():
    text = README.read_text(encoding="utf-8")
    match = re.search(re.escape(BEGIN) + r"\n(.*?)\n" + re.escape(END), text, re.S)
    assert match, f"README.md lacks the {BEGIN} ... {END} block"
    assert match.group(1) == table(), "README's Keras table differs: run python tests/test_parity.py"
    assert "## Coming from Keras" in text[:match.start()]


if __name__ == "__main__":
    print(table())
