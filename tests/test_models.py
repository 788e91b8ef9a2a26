"""The model presets of modularcnn.models and networks built from JSON architecture files."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from modularcnn import Net, load_model, models
from modularcnn.layers import BatchNormalization, Convolutional, Dense, Dropout, Flatten, MaxPooling
from tests.conftest import REPO_ROOT

PRESETS = ["lenet", "simple", "deep", "best"]


def conv_params(k, c_in, c_out):
    return k * k * c_in * c_out + c_out


def dense_params(n_in, n_out):
    return n_in * n_out + n_out


def test_lenet5_has_the_classic_layers_and_parameter_count():
    net = models.lenet5(input_shape=(28, 28, 1), num_classes=10, seed=0)
    expected = (conv_params(5, 1, 6) + conv_params(5, 6, 16) + dense_params(16 * 5 * 5, 120)
                + dense_params(120, 84) + dense_params(84, 10))
    assert expected == 61_706
    assert net.count_params() == expected
    assert [type(layer).__name__ for layer in net.layers] == [
        "Convolutional", "MaxPooling", "Convolutional", "MaxPooling", "Flatten", "Dense", "Dense",
        "Dense"]
    # Same-padded 5x5 then valid 5x5: 28 -> 28 -> 14 -> 10 -> 5.
    assert net.layers[3].output_shape == (5, 5, 16)


def test_simple_and_deep_parameter_counts_by_hand():
    simple = models.simple(seed=0)
    assert simple.count_params() == (conv_params(3, 1, 32) + dense_params(14 * 14 * 32, 128)
                                     + dense_params(128, 10))
    deep = models.deep(seed=0)
    assert deep.count_params() == (conv_params(3, 1, 32) + conv_params(3, 32, 32)
                                   + conv_params(3, 32, 64) + conv_params(3, 64, 64)
                                   + dense_params(7 * 7 * 64, 128) + dense_params(128, 10))


def test_best_has_batch_norm_after_every_hidden_layer_and_dropout():
    net = models.best(seed=0)
    assert net.count_params() == (conv_params(3, 1, 32) + conv_params(3, 32, 64)
                                  + dense_params(7 * 7 * 64, 128) + dense_params(128, 10)
                                  + 4 * (32 + 64 + 128))
    kinds = [type(layer) for layer in net.layers]
    for index, kind in enumerate(kinds[:-1]):
        if kind in (Convolutional, Dense):
            assert kinds[index + 1] is BatchNormalization, net.layers[index].name
    assert Dropout in kinds and MaxPooling in kinds and Flatten in kinds
    # Batch norm keeps 4 arrays per channel (gamma, beta, moving mean and variance).
    bn_params = sum(layer.count_params() for layer in net.layers if isinstance(layer, BatchNormalization))
    assert bn_params == 4 * (32 + 64 + 128)


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_fits_other_image_sizes_and_class_counts(name):
    net = models.get(name, input_shape=(32, 32, 3), num_classes=7, seed=1)
    assert isinstance(net, Net)
    assert net.input_shape == (32, 32, 3)
    assert net.output_shape == (7,)
    probabilities = net.predict(np.random.default_rng(0).random((3, 32, 32, 3), dtype=np.float32))
    assert probabilities.shape == (3, 7)
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("name", PRESETS)
def test_presets_are_seeded(name):
    first = models.get(name, seed=3).get_weights()
    second = models.get(name, seed=3).get_weights()
    other = models.get(name, seed=4).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_unknown_preset_names_the_choices():
    with pytest.raises(ValueError, match="unknown model preset 'resnet'.*lenet, simple, deep, best"):
        models.get("resnet")


def test_lenet5_alias():
    assert models.get("lenet5").get_config() == models.get("lenet").get_config()


def write_json(path, data):
    path.write_text(json.dumps(data))
    return path


def test_from_json_rebuilds_the_architecture(tmp_path):
    original = models.best(input_shape=(28, 28, 1), num_classes=10, seed=5)
    path = write_json(tmp_path / "arch.json", original.get_config())
    net = models.from_json(path)
    assert net.get_config() == original.get_config()
    assert net.count_params() == original.count_params()
    # Same seed in the file: same initial weights.
    assert all(np.array_equal(a, b) for a, b in zip(net.get_weights(), original.get_weights()))


def test_from_json_fills_a_missing_input_shape_and_overrides_the_seed(tmp_path):
    config = {"name": "tiny", "layers": [
        {"class_name": "Convolutional", "config": {"filters": 4, "filter_size": 3}},
        {"class_name": "Flatten", "config": {}},
        {"class_name": "Dense", "config": {"units": 3, "activation": "softmax"}},
    ]}
    path = write_json(tmp_path / "tiny.json", config)
    net = models.from_json(path, input_shape=(8, 8, 2), seed=11)
    assert net.input_shape == (8, 8, 2)
    assert net.seed == 11
    assert net.output_shape == (3,)
    assert net.count_params() == conv_params(3, 2, 4) + dense_params(6 * 6 * 4, 3)
    with pytest.raises(ValueError, match="tiny.json: .*input shape"):
        models.from_json(path)  # no input shape anywhere


def test_from_json_keeps_the_files_own_input_shape(tmp_path):
    config = models.simple(input_shape=(16, 16, 1), num_classes=4).get_config()
    net = models.from_json(write_json(tmp_path / "a.json", config), input_shape=(28, 28, 1))
    assert net.input_shape == (16, 16, 1)


@pytest.mark.parametrize("content, message", [
    ("{not json", "bad.json: not a valid JSON file"),
    ("[1, 2, 3]", "bad.json: expected a network config .*got list"),
    ('{"name": "x"}', r"bad.json: expected a network config .*keys \['name'\]"),
    ('{"input_shape": [4, 4, 1], "layers": [{"class_name": "Nope", "config": {}}]}',
     "bad.json: .*Nope"),
    ('{"input_shape": [4, 4, 1], "layers": [{"class_name": "Dense", "config": {"unitz": 3}}]}',
     "bad.json: invalid network config .*unitz"),
    ('{"input_shape": [4, 4, 1], "layers": [{"config": {}}]}',
     "bad.json: invalid network config .*class_name"),
])
def test_from_json_errors_name_the_file(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        models.from_json(path)


def test_from_json_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        models.from_json(tmp_path / "missing.json")


def test_best_recipe_script_runs_on_a_subset(mnist_dir, tmp_path):
    """scripts/train_mnist.py end to end on 300 images: prints accuracy and time, saves the model."""
    env = {**os.environ, "MODULARCNN_DATA": str(mnist_dir.parent), "MODULARCNN_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO_ROOT)] + [p for p in [os.environ.get("PYTHONPATH")]
                                                             if p])}
    save = tmp_path / "best.h5"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "train_mnist.py"), "--subset", "300",
         "--epochs", "2", "--test-subset", "200", "--save", str(save)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert re.search(r"Trained 2 epochs in \d+s", result.stdout)
    assert "lr: 0.002" in result.stdout and "lr: 0.0015" in result.stdout  # 2e-3, then x0.75
    accuracy = float(re.search(r"Test accuracy: ([0-9.]+) .* on 200 images", result.stdout).group(1))
    net = load_model(save)
    assert net.get_config()["layers"] == models.best(seed=0).get_config()["layers"]
    from modularcnn.datasets import mnist
    _, (x_test, y_test) = mnist.load_data(path=mnist_dir)
    predicted = net.predict(x_test[:200] / np.float32(255)).argmax(axis=1)
    assert accuracy == pytest.approx(np.mean(predicted == y_test[:200]), abs=5e-5)
