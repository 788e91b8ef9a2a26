"""plot_history, plot_predictions and plot_confusion_matrix (matplotlib's Agg backend)."""

import subprocess
import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

from modularcnn import models, plot_confusion_matrix, plot_history, plot_predictions  # noqa: E402
from modularcnn.callbacks import History  # noqa: E402
from tests.conftest import REPO_ROOT  # noqa: E402

LOGS = {"loss": [0.9, 0.5, 0.3], "accuracy": [0.7, 0.85, 0.9], "val_loss": [1.0, 0.6, 0.45],
        "val_accuracy": [0.65, 0.8, 0.88], "lr": [1e-3, 1e-3, 5e-4]}


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def make_history(logs):
    history = History()
    for epoch in range(len(next(iter(logs.values())))):
        history.on_epoch_end(epoch, {key: values[epoch] for key, values in logs.items()})
    return history


def curves(axis):
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata()))
            for line in axis.get_lines()}


def test_plot_history_draws_train_and_validation_curves_per_metric():
    figure = plot_history(make_history(LOGS))
    axes = figure.get_axes()
    assert [axis.get_title() for axis in axes] == ["loss", "accuracy"]  # lr is left out
    loss, accuracy = curves(axes[0]), curves(axes[1])
    assert loss == {"train": ([1, 2, 3], LOGS["loss"]), "validation": ([1, 2, 3], LOGS["val_loss"])}
    assert accuracy == {"train": ([1, 2, 3], LOGS["accuracy"]),
                        "validation": ([1, 2, 3], LOGS["val_accuracy"])}
    assert axes[0].get_xlabel() == "epoch"


def test_plot_history_accepts_the_dict_and_a_metric_subset():
    figure = plot_history(LOGS, metrics="accuracy")
    (axis,) = figure.get_axes()
    assert axis.get_title() == "accuracy"
    assert len(axis.get_lines()) == 2
    figure = plot_history({"loss": [3.0, 2.0], "accuracy": [0.1, 0.2]})  # no validation
    assert [len(axis.get_lines()) for axis in figure.get_axes()] == [1, 1]
    assert curves(figure.get_axes()[0]) == {"train": ([1, 2], [3.0, 2.0])}


def test_plot_history_draws_into_given_axes():
    figure, axes = plt.subplots(2, 1)
    returned = plot_history(LOGS, metrics=["val_loss", "lr"], ax=axes)
    assert returned is figure
    assert len(axes[0].get_lines()) == 1 and len(axes[1].get_lines()) == 1
    assert list(axes[1].get_lines()[0].get_ydata()) == LOGS["lr"]
    with pytest.raises(ValueError, match="got 2 Axes for 1 metrics"):
        plot_history(LOGS, metrics=["loss"], ax=axes)


def test_plot_history_errors():
    with pytest.raises(ValueError, match=r"\['auc'\] not in the history"):
        plot_history(LOGS, metrics=["loss", "auc"])
    with pytest.raises(ValueError, match="History or its .history dict, got list"):
        plot_history([0.1, 0.2])
    with pytest.raises(ValueError, match="no figures to plot"):
        plot_history({})


class FixedModel:
    """Predicts the class ids it is given, whatever the images."""

    def __init__(self, predicted, classes=3):
        self.scores = np.eye(classes, dtype=np.float32)[predicted]
        self.seen = None

    def predict(self, x):
        self.seen = np.array(x)
        return self.scores[:len(x)]


def test_plot_predictions_titles_each_image_and_marks_mistakes_red():
    x = np.random.default_rng(0).random((7, 6, 6, 1), dtype=np.float32)
    y = np.array([0, 1, 2, 0, 1, 2, 0])
    predicted = np.array([0, 2, 2, 1, 1, 2, 0])  # images 1 and 3 are wrong
    model = FixedModel(predicted)
    figure = plot_predictions(model, x, y, n=5, class_names=["cat", "dog", "emu"])
    axes = figure.get_axes()
    assert len(axes) == 5  # 3x2 grid with the sixth cell removed
    assert model.seen.shape == (5, 6, 6, 1)  # only the shown images are predicted
    names = ["cat", "dog", "emu"]
    for i, axis in enumerate(axes):
        assert axis.get_title() == f"{names[predicted[i]]} (true {names[y[i]]})"
        red = mcolors.same_color(axis.title.get_color(), "red")
        assert red == (i in (1, 3))
        np.testing.assert_array_equal(axis.get_images()[0].get_array(), x[i, ..., 0])
    assert "2 of 5 wrong" in figure._suptitle.get_text()


def test_plot_predictions_defaults_and_limits():
    x = np.zeros((4, 5, 5), dtype=np.uint8)  # grey (N, H, W)
    y = np.eye(3)[[0, 1, 2, 0]]  # one-hot labels are accepted
    figure = plot_predictions(FixedModel(np.array([0, 1, 2, 0])), x, y)  # n=25 > N
    axes = figure.get_axes()
    assert len(axes) == 4
    assert [axis.get_title() for axis in axes] == ["0 (true 0)", "1 (true 1)", "2 (true 2)",
                                                   "0 (true 0)"]
    rgb = np.random.default_rng(1).random((2, 4, 4, 3))
    figure = plot_predictions(FixedModel(np.array([1, 1])), rgb, np.array([1, 0]), n=2)
    assert figure.get_axes()[0].get_images()[0].get_array().shape == (4, 4, 3)
    with pytest.raises(ValueError, match="x has 4 images but y has 3"):
        plot_predictions(FixedModel(np.zeros(4, int)), x, y[:3])
    with pytest.raises(ValueError, match="n must be a positive int"):
        plot_predictions(FixedModel(np.zeros(4, int)), x, y, n=0)
    with pytest.raises(ValueError, match=r"images \(N, H, W\) or \(N, H, W, C\), got \(4, 25\)"):
        plot_predictions(FixedModel(np.zeros(4, int)), x.reshape(4, 25), y)


def test_plot_predictions_with_a_real_network():
    net = models.simple(input_shape=(8, 8, 1), num_classes=3, seed=0)
    x = np.random.default_rng(2).random((6, 8, 8, 1), dtype=np.float32)
    y = np.array([0, 1, 2, 0, 1, 2])
    expected = net.predict(x).argmax(axis=1)
    figure = plot_predictions(net, x, y, n=6)
    titles = [axis.get_title() for axis in figure.get_axes()]
    assert titles == [f"{p} (true {t})" for p, t in zip(expected, y)]


def test_plot_confusion_matrix_writes_every_count():
    cm = np.array([[5, 1, 0], [2, 7, 1], [0, 0, 9]])
    figure = plot_confusion_matrix(cm, class_names=["a", "b", "c"])
    axis = figure.get_axes()[0]  # the second Axes is the colour bar
    texts = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text()
             for t in axis.texts}
    assert texts == {(i, j): str(cm[i, j]) for i in range(3) for j in range(3)}
    assert [label.get_text() for label in axis.get_yticklabels()] == ["a", "b", "c"]
    np.testing.assert_array_equal(axis.get_images()[0].get_array(), cm)


def test_plot_confusion_matrix_normalised_rows():
    cm = np.array([[3, 1], [0, 0]])
    figure = plot_confusion_matrix(cm, normalize=True)
    values = figure.get_axes()[0].get_images()[0].get_array()
    np.testing.assert_allclose(values, [[0.75, 0.25], [0.0, 0.0]])  # an empty row stays 0
    with pytest.raises(ValueError, match=r"square \(K, K\) matrix, got \(2, 3\)"):
        plot_confusion_matrix(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="1 class names for 2 classes"):
        plot_confusion_matrix(cm, class_names=["x"])


def test_missing_matplotlib_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    for call in (lambda: plot_history(LOGS),
                 lambda: plot_predictions(FixedModel(np.array([0])), np.zeros((1, 4, 4)), [0]),
                 lambda: plot_confusion_matrix(np.eye(2))):
        with pytest.raises(ImportError, match=r"pip install modularcnn\[plot\]"):
            call()


def test_import_modularcnn_does_not_import_matplotlib():
    code = ("import sys; sys.modules['matplotlib'] = None; import modularcnn; "
            "assert 'matplotlib.pyplot' not in sys.modules; "
            "\ntry:\n    modularcnn.plot_history({'loss': [1.0]})\n"
            "except ImportError as e:\n    print(e)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO_ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "pip install modularcnn[plot]" in result.stdout
