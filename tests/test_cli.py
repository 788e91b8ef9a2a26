"""The ``modularcnn`` command line, run as a subprocess on a real MNIST subset.

Every command is run as ``python -m modularcnn.cli ...`` (and through the installed ``modularcnn``
script when there is one), so exit statuses, stdout and stderr are what a user sees.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from modularcnn.datasets import mnist
from tests.conftest import REPO_ROOT

TIMEOUT = 120


def cli_env(mnist_dir, **extra):
    env = dict(os.environ)
    env["MODULARCNN_DATA"] = str(mnist_dir.parent)
    env["MODULARCNN_OFFLINE"] = "1"  # never download
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    env.update(extra)
    return env


def command(*args):
    return [sys.executable, "-m", "modularcnn.cli", *map(str, args)]


@pytest.fixture(scope="module")
def env(mnist_dir):
    return cli_env(mnist_dir)


@pytest.fixture(scope="module")
def run(env, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("cli")

    def run(*args, extra_env=None):
        return subprocess.run(command(*args), cwd=workdir, env={**env, **(extra_env or {})},
                              capture_output=True, text=True, timeout=TIMEOUT)
    return run


@pytest.fixture(scope="module")
def test_images(mnist_dir):
    _, (x_test, y_test) = mnist.load_data(path=mnist_dir)
    return x_test, y_test.astype(np.int64)


@pytest.fixture(scope="module")
def trained(run, tmp_path_factory):
    """One LeNet-5 trained by the CLI on 2,000 MNIST images for one epoch: (path, stdout)."""
    path = tmp_path_factory.mktemp("model") / "lenet.h5"
    result = run("train", "--num-examples", 2000, "--epochs", 1, "--test-examples", 1000,
                 "--save", path, "--seed", 0)
    assert result.returncode == 0, result.stderr
    return path, result.stdout


def assert_one_line_error(result, status, *fragments):
    assert result.returncode == status, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("modularcnn: error: "), lines[0]
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


# -- train ----------------------------------------------------------------------------------------


def test_train_prints_summary_progress_and_test_accuracy(trained, test_images):
    from modularcnn import load_model
    path, stdout = trained
    assert 'Model: "lenet5"' in stdout and "Total params: 61,706" in stdout
    assert "Training on 1,800 images (200 held out for validation), testing on 1,000" in stdout
    epoch_line = next(line for line in stdout.splitlines() if line.startswith("Epoch 1/1 - "))
    assert "val_loss" in epoch_line and "val_accuracy" in epoch_line
    printed = float(re.search(r"Test accuracy: ([0-9.]+) \(loss", stdout).group(1))
    # The saved model gives the printed accuracy on the same 1,000 test images.
    x_test, y_test = test_images
    net = load_model(path)
    predicted = net.predict(x_test[:1000] / np.float32(255)).argmax(axis=1)
    assert printed == pytest.approx(np.mean(predicted == y_test[:1000]), abs=5e-5)
    assert printed > 0.6  # one epoch on 1,800 images: far above chance (0.1)


def test_train_options_json_model_sgd_decay_augment(run, tmp_path):
    from modularcnn import load_model, models
    arch = tmp_path / "arch.json"
    arch.write_text(__import__("json").dumps({"name": "tiny", "layers": [
        {"class_name": "Convolutional", "config": {"filters": 4, "filter_size": 3, "stride": 2,
                                                   "activation": "relu"}},
        {"class_name": "Flatten", "config": {}},
        {"class_name": "Dense", "config": {"units": 10, "activation": "softmax"}}]}))
    save = tmp_path / "tiny.h5"
    result = run("train", "--model", arch, "--optimizer", "sgd", "--lr", 0.05, "--lr-decay", 0.5,
                 "--epochs", 2, "--num-examples", 300, "--val-examples", 50, "--augment", 2,
                 "--test-examples", 100, "--batch-size", 50, "--save", save, "--workers", 2)
    assert result.returncode == 0, result.stderr
    assert "Training on 500 images (50 held out for validation)" in result.stdout  # 250 x 2 copies
    lrs = [float(v) for v in re.findall(r"lr: ([0-9.e-]+)", result.stdout)]
    assert lrs == [0.05, 0.025]  # multiplied by --lr-decay after each epoch
    net = load_model(save)
    assert net.get_config()["layers"] == models.from_json(arch, input_shape=(28, 28, 1)).get_config()[
        "layers"]
    assert type(net.optimizer).__name__ == "SGD"


# -- evaluate, predict, summary -------------------------------------------------------------------


def parse_table(stdout, title):
    """Rows (lists of cells) of the tabulate table printed after the line ``title``."""
    lines = stdout.splitlines()
    start = lines.index(title) + 3  # title, header, dashes
    rows = []
    for line in lines[start:]:
        if not line.strip():
            break
        rows.append(line.split())
    return rows


def test_evaluate_matches_an_independent_count(trained, run, test_images):
    from modularcnn import load_model
    path, _ = trained
    result = run("evaluate", path, "--num-examples", 500)
    assert result.returncode == 0, result.stderr
    x_test, y_test = test_images
    net = load_model(path)
    predicted = net.predict(x_test[:500] / np.float32(255)).argmax(axis=1)
    truth = y_test[:500]
    matrix = np.zeros((10, 10), dtype=int)
    for t, p in zip(truth, predicted):  # naive count
        matrix[t, p] += 1
    accuracy = float(re.search(r"accuracy: ([0-9.]+)", result.stdout).group(1))
    assert accuracy == pytest.approx(np.mean(predicted == truth), abs=5e-5)
    per_class = parse_table(result.stdout, "Per-class accuracy")
    assert len(per_class) == 10
    for k, row in enumerate(per_class):
        assert row[:3] == [str(k), str((truth == k).sum()), str(matrix[k, k])]
        assert float(row[3]) == pytest.approx(matrix[k, k] / (truth == k).sum(), abs=5e-5)
    confusion = parse_table(result.stdout,
                            "Confusion matrix (rows: true class, columns: predicted class)")
    assert [[int(v) for v in row] for row in confusion] == [[k] + list(matrix[k]) for k in range(10)]


def prediction_rows(stdout):
    rows = []
    for line in stdout.splitlines():
        cells = line.split()
        if cells and cells[0].isdigit():
            rows.append(cells)
    return rows


def test_predict_npy_uint8_float_and_single_image(trained, run, test_images, tmp_path):
    from modularcnn import load_model
    path, _ = trained
    x_test, _ = test_images
    images = x_test[:6]
    probabilities = load_model(path).predict(images / np.float32(255))
    expected = [[str(i), str(int(p.argmax())), f"{p.max():.4f}"] for i, p in enumerate(probabilities)]

    np.save(tmp_path / "u8.npy", images)  # (N, 28, 28) uint8, scaled by 1/255
    np.save(tmp_path / "f32.npy", (images / np.float32(255))[..., None])  # (N, 28, 28, 1) floats
    np.save(tmp_path / "one.npy", images[0])  # one (28, 28) image
    for name, rows in (("u8.npy", expected), ("f32.npy", expected), ("one.npy", expected[:1])):
        result = run("predict", path, tmp_path / name)
        assert result.returncode == 0, result.stderr
        assert "probability" in result.stdout
        assert prediction_rows(result.stdout) == rows, name


def test_predict_csv_with_labels(trained, run, test_images, tmp_path):
    from modularcnn import load_model
    path, _ = trained
    x_test, y_test = test_images
    rows = np.column_stack([y_test[:5], x_test[:5].reshape(5, -1)])
    csv = tmp_path / "digits.csv"
    csv.write_text("\n".join(",".join(map(str, row)) for row in rows) + "\n")
    predicted = load_model(path).predict(x_test[:5] / np.float32(255)).argmax(axis=1)
    result = run("predict", path, csv)
    assert result.returncode == 0, result.stderr
    printed = prediction_rows(result.stdout)
    assert [row[1] for row in printed] == [str(p) for p in predicted]
    assert [row[3] for row in printed] == [str(y) for y in y_test[:5]]
    accuracy = float(re.search(r"Accuracy: ([0-9.]+) on 5 images", result.stdout).group(1))
    assert accuracy == pytest.approx(np.mean(predicted == y_test[:5]))


def test_summary(trained, run):
    path, _ = trained
    result = run("summary", path)
    assert result.returncode == 0, result.stderr
    assert 'Model: "lenet5"' in result.stdout
    for name in ("convolutional", "max_pooling", "convolutional_1", "flatten", "dense_2"):
        assert re.search(rf"^{name}\s", result.stdout, re.MULTILINE), name
    assert "Total params: 61,706" in result.stdout


@pytest.mark.skipif(shutil.which("modularcnn") is None, reason="the console script is not installed")
def test_installed_console_script(trained, env):
    path, _ = trained
    result = subprocess.run(["modularcnn", "summary", str(path)], env=env, capture_output=True,
                            text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert "Total params: 61,706" in result.stdout
    result = subprocess.run(["modularcnn", "summary", str(path) + ".missing"], env=env,
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert_one_line_error(result, 1, ".missing")


# -- help and errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("args, expected", [
    ([], ["train", "evaluate", "predict", "summary"]),
    (["train"], ["--dataset", "--model", "--epochs", "--batch-size", "--lr", "--lr-decay",
                 "--optimizer", "--num-examples", "--val-examples", "--val-split", "--augment",
                 "--save", "--seed", "--workers", "csv:TRAIN.csv"]),
    (["evaluate"], ["MODEL.h5", "--dataset", "--num-examples"]),
    (["predict"], ["MODEL.h5", "IMAGES", ".npy", "uint8"]),
    (["summary"], ["MODEL.h5"]),
])
def test_help(run, args, expected):
    result = run(*args, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: modularcnn {' '.join(args)}".rstrip())
    for word in expected:
        assert word in result.stdout, word


@pytest.mark.parametrize("args, fragments", [
    ([], ["required: COMMAND"]),
    (["fly"], ["invalid choice: 'fly'"]),
    (["train", "--dataset", "imagenet"], ["unknown dataset 'imagenet'", "csv:PATH"]),
    (["train", "--model", "resnet"], ["unknown model 'resnet'", "PATH.json"]),
    (["train", "--epochs", "0"], ["--epochs", "expected a value >= 1, got 0"]),
    (["train", "--epochs", "two"], ["--epochs", "expected an integer, got 'two'"]),
    (["train", "--lr", "-1"], ["--lr", "> 0"]),
    (["train", "--workers", "0"], ["--workers", "expected 'auto' or an integer >= 1, got '0'"]),
    (["train", "--val-split", "1"], ["--val-split", "< 1"]),
    (["train", "--val-split", "0.1", "--val-examples", "5"], ["not allowed with"]),
    (["train", "--optimizer", "lbfgs"], ["invalid choice: 'lbfgs'"]),
    (["train", "--colour"], ["unrecognized arguments: --colour"]),
    (["evaluate"], ["required: MODEL.h5"]),
    (["predict", "m.h5"], ["required: IMAGES"]),
])
def test_usage_errors_exit_2_with_one_line(run, args, fragments):
    assert_one_line_error(run(*args), 2, *fragments)


def test_missing_and_damaged_model_files(run, tmp_path):
    missing = tmp_path / "missing.h5"
    for args in (["summary", missing], ["evaluate", missing], ["predict", missing, "x.npy"]):
        assert_one_line_error(run(*args), 1, "missing.h5")
    damaged = tmp_path / "damaged.h5"
    damaged.write_bytes(b"this is not an HDF5 file\n" * 10)
    assert_one_line_error(run("summary", damaged), 1, "damaged.h5")
    missing_json = tmp_path / "arch.json"
    assert_one_line_error(run("train", "--model", missing_json, "--num-examples", 10), 1, "arch.json")


def test_data_errors(trained, run, tmp_path):
    path, _ = trained
    # A dataset that is not on disk (and may not be downloaded): the multi-line message is one line.
    result = run("evaluate", path, "--dataset", "cifar10", extra_env={"HOME": str(tmp_path)})
    assert_one_line_error(result, 1, "CIFAR-10", "not found")
    # Images of the wrong shape.
    np.save(tmp_path / "colour.npy", np.zeros((3, 32, 32, 3), dtype=np.uint8))
    assert_one_line_error(run("predict", path, tmp_path / "colour.npy"), 1,
                          "(3, 32, 32, 3)", "(N, 28, 28, 1) or (N, 28, 28)")
    tiny = tmp_path / "tiny.csv"
    tiny.write_text("1,0,0,0,0\n2,255,0,0,0\n")
    assert_one_line_error(run("evaluate", path, "--dataset", f"csv:{tiny}"), 1, "tiny.csv", "4 pixel")
    assert_one_line_error(run("predict", path, tmp_path / "images.txt"), 1, ".npy or .csv")
    assert_one_line_error(run("predict", path, tmp_path / "absent.npy"), 1, "absent.npy")
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("1,0,0\n2,0\n")
    assert_one_line_error(run("train", "--dataset", f"csv:{ragged}"), 1, "ragged.csv", "line 2")


def test_train_on_a_csv_dataset(run, tmp_path):
    rng = np.random.default_rng(0)
    # Two classes of 6x6 images: bright top half or bright bottom half.
    labels = rng.integers(0, 2, 120)
    images = np.zeros((120, 6, 6), dtype=np.uint8)
    images[labels == 0, :3] = 200
    images[labels == 1, 3:] = 200
    csv = tmp_path / "halves.csv"
    csv.write_text("label," + ",".join(f"p{i}" for i in range(36)) + "\n" + "\n".join(
        ",".join(map(str, [label, *image.ravel()])) for label, image in zip(labels, images)))
    result = run("train", "--dataset", f"csv:{csv}", "--model", "simple", "--epochs", 3,
                 "--batch-size", 16, "--val-split", 0)
    assert result.returncode == 0, result.stderr
    assert "Training on 108 images (0 held out for validation), testing on 12" in result.stdout
    assert "(None, 6, 6, 32)" in result.stdout  # the preset was built for 6x6 grey images
    assert float(re.search(r"Test accuracy: ([0-9.]+)", result.stdout).group(1)) == 1.0


# -- interrupt safety -----------------------------------------------------------------------------


def start_training(env, save, *extra):
    args = ["train", "--num-examples", 1000, "--val-examples", 100, "--test-examples", 100,
            "--epochs", 100, "--save", save, *extra]
    return subprocess.Popen(command(*args), cwd=save.parent, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for_file(process, path, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"training ended early: {process.communicate()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"no {path} after {timeout}s")
        time.sleep(0.05)


def assert_loadable(path, clean=True):
    from modularcnn import load_model
    net = load_model(path)
    assert net.count_params() == 61_706
    assert net.predict(np.zeros((1, 28, 28), dtype=np.float32)).shape == (1, 10)
    if clean:
        assert not list(path.parent.glob(".*.tmp")), "a temporary file was left behind"


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_stops_cleanly_and_saves(env, tmp_path, presses):
    save = tmp_path / "model.h5"
    process = start_training(env, save)
    try:
        wait_for_file(process, save)  # the first epoch's checkpoint
        first = save.stat().st_mtime_ns
        for _ in range(presses):
            process.send_signal(signal.SIGINT)
            time.sleep(0.02)
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    finally:
        process.kill()
    # Exit status 130; a second press landing while the interpreter shuts down (when Python has reset
    # SIGINT to its default action) ends the process by the signal itself, which a shell reports as 130.
    assert process.returncode in (130, -signal.SIGINT), (stdout, stderr)
    assert "Traceback" not in stderr
    assert "Interrupted" in stdout
    if presses == 1:
        assert "Saved the model to" in stdout
        assert save.stat().st_mtime_ns > first  # the final save happened after the checkpoint
    assert "Test accuracy" not in stdout
    assert_loadable(save)


def test_sigkill_during_a_save_leaves_a_loadable_file(env, tmp_path):
    save = tmp_path / "model.h5"
    process = start_training(env, save, "--batch-size", 100)
    try:
        wait_for_file(process, save)
        # Kill as soon as the next save has begun writing its temporary file (or after a while).
        deadline = time.monotonic() + 30
        while not list(tmp_path.glob(".model.h5.*.tmp")) and time.monotonic() < deadline:
            time.sleep(0.001)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=TIMEOUT)
    finally:
        process.kill()
    assert process.returncode == -signal.SIGKILL
    assert_loadable(save, clean=False)  # a stray temporary file may remain; nothing reads it
