"""Tests for modularcnn.metrics against hand-counted expectations."""

import json

import numpy as np
import pytest

from modularcnn import metrics
from modularcnn.metrics import (
    Metric,
    accuracy,
    binary_accuracy,
    categorical_accuracy,
    confusion_matrix,
    mean_absolute_error,
    mean_squared_error,
    sparse_categorical_accuracy,
    top_k_accuracy,
)

# 4 samples, 3 classes; argmax per row = [0, 2, 1, 1].
SCORES = np.array(
    [
        [0.7, 0.2, 0.1],
        [0.1, 0.3, 0.6],
        [0.2, 0.5, 0.3],
        [0.3, 0.4, 0.3],
    ]
)
IDS = np.array([0, 1, 1, 2])  # right, wrong, right, wrong -> 0.5


def test_categorical_accuracy_ids_and_one_hot():
    assert categorical_accuracy(IDS, SCORES) == 0.5
    assert categorical_accuracy(np.eye(3)[IDS], SCORES) == 0.5
    assert categorical_accuracy(IDS[:, None], SCORES) == 0.5
    assert sparse_categorical_accuracy(IDS, SCORES) == 0.5
    assert accuracy(IDS, SCORES) == 0.5
    assert accuracy(IDS.astype(np.float32), np.log(SCORES).astype(np.float32)) == 0.5  # logits
    assert type(accuracy(IDS, SCORES)) is float


def test_binary_accuracy():
    y_true = np.array([1, 0, 1, 0, 1])
    y_pred = np.array([0.9, 0.4, 0.2, 0.6, 0.51])  # right, right, wrong, wrong, right
    assert binary_accuracy(y_true, y_pred) == pytest.approx(0.6)
    assert accuracy(y_true, y_pred) == pytest.approx(0.6)
    assert accuracy(y_true, y_pred[:, None]) == pytest.approx(0.6)
    assert accuracy(y_true[:, None], y_pred) == pytest.approx(0.6)
    assert binary_accuracy(y_true, y_pred, threshold=0.55) == pytest.approx(0.4)
    # Multi-label: mean over all N * K outputs.
    multi_true = np.array([[1, 0], [0, 0]])
    multi_pred = np.array([[0.8, 0.7], [0.1, 0.2]])  # 3 of 4 right
    assert binary_accuracy(multi_true, multi_pred) == pytest.approx(0.75)
    # Masks (N, H, W, 1): every pixel counts once; 2 of the 6 pixels are on the wrong side.
    masks = np.array([[[1, 0, 1]], [[0, 0, 1]]], dtype=float)[..., None]
    probs = np.array([[[0.9, 0.6, 0.7]], [[0.2, 0.1, 0.3]]])[..., None]
    assert binary_accuracy(masks, probs) == pytest.approx(4 / 6)
    assert accuracy(masks, probs) == pytest.approx(4 / 6)


def test_top_k_accuracy():
    # True-class rank per row: 1st, 2nd, 1st, 2nd/3rd tie (0.3 vs 0.3 with 0.4 above).
    assert top_k_accuracy(IDS, SCORES, k=1) == 0.5
    assert top_k_accuracy(IDS, SCORES, k=2) == 1.0
    # Labels [2, 0, 0, 0] rank 3rd, 3rd, 3rd, and 2nd (tied with class 2): only the last counts.
    assert top_k_accuracy(np.array([2, 0, 0, 0]), SCORES, k=2) == pytest.approx(0.25)
    assert top_k_accuracy(IDS, SCORES) == 1.0  # default k=5 >= K
    assert top_k_accuracy(np.eye(3)[IDS], SCORES, k=1) == 0.5
    assert metrics.top_k_categorical_accuracy(np.eye(3)[IDS], SCORES, k=1) == 0.5


def test_top_k_ties_count_as_correct():
    scores = np.array([[0.5, 0.5, 0.0]])
    assert top_k_accuracy([1], scores, k=1) == 1.0
    assert top_k_accuracy([2], scores, k=2) == 0.0


def test_top_k_matches_naive_sort():
    rng = np.random.default_rng(3)
    scores = rng.normal(size=(50, 10))
    ids = rng.integers(0, 10, size=50)
    for k in (1, 3, 7):
        naive = np.mean([ids[i] in np.argsort(-scores[i])[:k] for i in range(50)])
        assert top_k_accuracy(ids, scores, k=k) == pytest.approx(naive)


def test_regression_metrics():
    y_true = np.array([1.0, 2.0, 3.0])
    y_pred = np.array([[2.0], [2.0], [1.0]])
    assert mean_squared_error(y_true, y_pred) == pytest.approx(5 / 3)
    assert mean_absolute_error(y_true, y_pred) == pytest.approx(1.0)


def test_confusion_matrix():
    y_true = np.array([0, 1, 2, 2, 1, 0, 2])
    y_pred = np.array([0, 2, 2, 1, 1, 0, 2])
    expected = np.zeros((3, 3), dtype=np.int64)
    for t, p in zip(y_true, y_pred):
        expected[t, p] += 1
    cm = confusion_matrix(y_true, y_pred)
    assert cm.dtype == np.int64 and cm.shape == (3, 3)
    np.testing.assert_array_equal(cm, expected)
    np.testing.assert_array_equal(cm, [[2, 0, 0], [0, 1, 1], [0, 1, 2]])
    bigger = confusion_matrix(y_true, y_pred, num_classes=5)
    assert bigger.shape == (5, 5) and bigger[:3, :3].tolist() == expected.tolist()
    assert bigger.sum() == 7
    # One-hot truth and score predictions are reduced with argmax.
    np.testing.assert_array_equal(confusion_matrix(np.eye(3)[y_true], np.eye(3)[y_pred] * 0.9), cm)


@pytest.mark.parametrize(
    "call, pattern",
    [
        (lambda: accuracy(np.array([0, 1, 2]), SCORES), "received shape"),
        (lambda: accuracy(np.array([0, 1, 3, 0]), SCORES), r"\[0, 3\)"),
        (lambda: accuracy(np.array([0, -1, 1, 0]), SCORES), r"\[0, 3\)"),
        (lambda: accuracy(np.array([0, 0.5, 1, 0]), SCORES), "integers"),
        (lambda: categorical_accuracy(IDS, SCORES[0]), r"shape \(N, K\)"),
        (lambda: accuracy(IDS, np.zeros((4, 3, 2))), r"shape \(N, K\)"),
        (lambda: binary_accuracy(np.zeros(3), np.zeros(4)), "received shape"),
        (lambda: top_k_accuracy(IDS, SCORES, k=0), "k must be"),
        (lambda: mean_squared_error(np.zeros(3), np.zeros((3, 2))), "received shape"),
        (lambda: confusion_matrix([0, 1], [0, 1, 1]), "samples"),
        (lambda: confusion_matrix([0, 3], [0, 1], num_classes=3), r"\[0, 3\)"),
        (lambda: confusion_matrix([0, 1], [0, 1], num_classes=0), "num_classes"),
        (lambda: confusion_matrix(np.zeros((2, 2, 2)), [0, 1]), "received shape"),
    ],
)
def test_bad_inputs(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


@pytest.mark.parametrize(
    "name, y_true, y_pred, expected",
    [
        ("accuracy", IDS, SCORES, 0.5),
        ("acc", IDS, SCORES, 0.5),
        ("ACCURACY", IDS, SCORES, 0.5),
        ("sparse_categorical_accuracy", IDS, SCORES, 0.5),
        ("categorical_accuracy", np.eye(3)[IDS], SCORES, 0.5),
        ("binary_accuracy", np.array([1, 0]), np.array([0.9, 0.9]), 0.5),
        ("top_k_accuracy", IDS, SCORES, 1.0),
        ("top_5_accuracy", IDS, SCORES, 1.0),
        ("top_1_accuracy", IDS, SCORES, 0.5),
        ("top_k_categorical_accuracy", np.eye(3)[IDS], SCORES, 1.0),
        ("mse", np.zeros(2), np.array([1.0, 3.0]), 5.0),
        ("mae", np.zeros(2), np.array([1.0, -3.0]), 2.0),
    ],
)
def test_get_by_name(name, y_true, y_pred, expected):
    metric = metrics.get(name)
    assert metric.name == name.lower()
    assert metric(y_true, y_pred) == pytest.approx(expected)


def test_get_top_k_uses_k_5():
    scores = np.tile(np.arange(7.0), (2, 1))  # class 6 ranks first, class 1 ranks 6th
    assert metrics.get("top_k_accuracy")(np.array([2, 1]), scores) == 0.5
    assert metrics.get("top_5_accuracy").options == {"k": 5}


def test_metric_config_round_trip_and_get():
    metric = Metric("top_k_accuracy", name="top3", k=3)
    config = metric.get_config()
    rebuilt = Metric.from_config(json.loads(json.dumps(config)))
    assert rebuilt.get_config() == config and rebuilt.name == "top3"
    again = metrics.get(json.loads(json.dumps(metrics.serialize(metric))))
    assert again.get_config() == config
    assert again(IDS, SCORES) == 1.0
    assert metrics.get(metric) is metric
    for name in ("accuracy", "top_5_accuracy", "binary_accuracy"):
        m = metrics.get(name)
        assert Metric.from_config(m.get_config()).get_config() == m.get_config()


def test_get_errors():
    with pytest.raises(ValueError, match="accuracy.*top_k_accuracy"):
        metrics.get("f2_score")  # f1_score is a metric now (F1Score)
    with pytest.raises(ValueError, match="invalid options"):
        Metric("accuracy", k=3)
    with pytest.raises(ValueError, match="Unknown metric function"):
        Metric("precision")
    with pytest.raises(ValueError, match="class_name"):
        metrics.get({"config": {}})
    with pytest.raises(ValueError):
        metrics.get(3.0)
