"""Stateful metrics Precision, Recall, AUC, F1Score: against naive definitions, against numbers Keras
3.15.1 computed, across batches, in compile/fit/evaluate (also with workers=2) and in model files."""

import numpy as np
import pytest

from modularcnn import Net, load_model, metrics
from modularcnn.layers import Dense
from modularcnn.metrics import AUC, F1Score, Precision, Recall

RNG = np.random.default_rng(0)
Y_PRED = np.round(RNG.random((40, 3)), 3)
IDS = RNG.integers(0, 3, 40)
Y_TRUE = np.eye(3)[IDS]

#: Computed by Keras 3.15.1 (torch backend) from Y_PRED and Y_TRUE above, with update_state on rows
#: [:25] then [25:] and result(); the script is in the commit message of this test.
KERAS = {
    "precision": 0.3731343150138855,
    "precision_t03": 0.35227271914482117,
    "precision_top1": 0.42500001192092896,
    "precision_top2_class1": 0.36666667461395264,
    "recall": 0.625,
    "recall_class2": 0.38461539149284363,
    "auc_roc": 0.5818749666213989,
    "auc_roc_minoring": 0.5799999833106995,
    "auc_roc_majoring": 0.5837500095367432,
    "auc_pr": 0.47795942425727844,
    "auc_pr_minoring": 0.42277204990386963,
    "auc_roc_17": 0.58203125,
    "auc_logits": 0.5821875333786011,
    "f1_macro": 0.4211169481277466,
    "f1_micro": 0.4249999523162842,
    "f1_weighted": 0.42026644945144653,
    "f1_macro_t04": 0.48311281204223633,
}


def in_two_batches(metric, y_true=Y_TRUE, y_pred=Y_PRED):
    metric.update_state(y_true[:25], y_pred[:25])
    metric.update_state(y_true[25:], y_pred[25:])
    return metric.result()


@pytest.mark.parametrize("key, metric, scores", [
    ("precision", lambda: Precision(), Y_PRED),
    ("precision_t03", lambda: Precision(thresholds=0.3), Y_PRED),
    ("precision_top1", lambda: Precision(top_k=1), Y_PRED),
    ("precision_top2_class1", lambda: Precision(top_k=2, class_id=1), Y_PRED),
    ("recall", lambda: Recall(), Y_PRED),
    ("recall_class2", lambda: Recall(class_id=2), Y_PRED),
    ("auc_roc", lambda: AUC(), Y_PRED),
    ("auc_roc_minoring", lambda: AUC(summation_method="minoring"), Y_PRED),
    ("auc_roc_majoring", lambda: AUC(summation_method="majoring"), Y_PRED),
    ("auc_pr", lambda: AUC(curve="PR"), Y_PRED),
    ("auc_pr_minoring", lambda: AUC(curve="PR", summation_method="minoring"), Y_PRED),
    ("auc_roc_17", lambda: AUC(num_thresholds=17), Y_PRED),
    ("auc_logits", lambda: AUC(from_logits=True), Y_PRED * 6 - 3),
    ("f1_macro", lambda: F1Score(average="macro"), Y_PRED),
    ("f1_micro", lambda: F1Score(average="micro"), Y_PRED),
    ("f1_weighted", lambda: F1Score(average="weighted"), Y_PRED),
    ("f1_macro_t04", lambda: F1Score(average="macro", threshold=0.4), Y_PRED),
])
def test_results_equal_keras(key, metric, scores):
    assert in_two_batches(metric(), y_pred=scores) == pytest.approx(KERAS[key], abs=2e-7)


# -- naive definitions ---------------------------------------------------------------------------------

def naive_counts(y_true, y_pred, threshold=0.5):
    tp = fp = fn = 0
    for truth, score in zip(y_true.ravel(), y_pred.ravel()):
        positive = score > threshold
        tp += positive and truth == 1
        fp += positive and truth == 0
        fn += (not positive) and truth == 1
    return tp, fp, fn


def test_precision_and_recall_are_the_counts_over_all_batches_not_a_mean_of_batches():
    tp, fp, fn = naive_counts(Y_TRUE, Y_PRED, 0.3)
    precision, recall = Precision(thresholds=0.3), Recall(thresholds=0.3)
    for start in range(0, 40, 7):
        precision.update_state(Y_TRUE[start:start + 7], Y_PRED[start:start + 7])
        recall.update_state(IDS[start:start + 7], Y_PRED[start:start + 7])  # class ids one-hot encoded
    assert precision.result() == pytest.approx(tp / (tp + fp))
    assert recall.result() == pytest.approx(tp / (tp + fn))
    batch_mean = np.mean([Precision(thresholds=0.3)(Y_TRUE[s:s + 7], Y_PRED[s:s + 7])
                          for s in range(0, 40, 7)])
    assert abs(batch_mean - tp / (tp + fp)) > 1e-3  # what the state is for
    precision.reset_state()
    assert precision.result() == 0.0


def test_calling_a_metric_gives_one_batch_and_keeps_the_state():
    precision = Precision()
    precision.update_state(Y_TRUE[:10], Y_PRED[:10])
    before = precision.result()
    tp, fp, _ = naive_counts(Y_TRUE[10:], Y_PRED[10:])
    assert precision(Y_TRUE[10:], Y_PRED[10:]) == pytest.approx(tp / (tp + fp))
    assert precision.result() == before


def test_roc_auc_is_the_probability_a_positive_outscores_a_negative():
    # Scores halfway between thresholds: every threshold separates them as the pairs do.
    n = 101
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 2, 300)
    grid = (rng.integers(0, n - 1, 300) + 0.5) / (n - 1)
    scores = np.clip(grid + 0.15 * truth - 0.075, 0.5 / (n - 1), 1 - 0.5 / (n - 1))
    scores = (np.floor(scores * (n - 1)) + 0.5) / (n - 1)
    positives, negatives = scores[truth == 1], scores[truth == 0]
    wins = sum((p > q) + 0.5 * (p == q) for p in positives for q in negatives)
    auc = AUC(num_thresholds=n)
    auc.update_state(truth[:100], scores[:100])
    auc.update_state(truth[100:], scores[100:])
    assert auc.result() == pytest.approx(wins / (len(positives) * len(negatives)), abs=1e-12)
    separable = AUC()
    separable.update_state([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert separable.result() == pytest.approx(1.0)
    pr = AUC(curve="PR")
    pr.update_state([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert pr.result() == pytest.approx(1.0)


def test_f1_score_against_a_loop_over_classes():
    predicted = Y_PRED.argmax(1)
    scores = []
    for c in range(3):
        tp = np.sum((predicted == c) & (IDS == c))
        precision = tp / max(np.sum(predicted == c), 1)
        recall = tp / max(np.sum(IDS == c), 1)
        scores.append(0 if tp == 0 else 2 * precision * recall / (precision + recall))
    support = np.bincount(IDS, minlength=3)
    assert in_two_batches(F1Score("macro")) == pytest.approx(np.mean(scores))
    assert in_two_batches(F1Score("weighted")) == pytest.approx(np.dot(scores, support) / 40)
    assert in_two_batches(F1Score("micro")) == pytest.approx(np.mean(predicted == IDS))


def test_sample_weight_weighs_the_counts():
    weights = RNG.random(40)
    tp = np.sum(weights[:, None] * ((Y_PRED > 0.5) & (Y_TRUE == 1)))
    fp = np.sum(weights[:, None] * ((Y_PRED > 0.5) & (Y_TRUE == 0)))
    precision = Precision()
    precision.update_state(Y_TRUE, Y_PRED, sample_weight=weights)
    assert precision.result() == pytest.approx(tp / (tp + fp))


# -- bad input ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("build, message", [
    (lambda: Precision(thresholds=[0.2, 0.5]), "one number"), (lambda: Recall(thresholds=1.5), "one number"),
    (lambda: Precision(top_k=0), "top_k"), (lambda: Recall(class_id=-1), "class_id"),
    (lambda: AUC(num_thresholds=1), "num_thresholds"), (lambda: AUC(curve="DET"), "curve"),
    (lambda: AUC(summation_method="simpson"), "summation_method"), (lambda: AUC(multi_label=True), "multi_label"),
    (lambda: AUC(from_logits="yes"), "from_logits"), (lambda: F1Score(average=None), "average"),
    (lambda: F1Score(threshold=2), "one number"), (lambda: Precision(name=""), "name")])
def test_bad_arguments(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_bad_batches_change_no_state():
    precision = Precision()
    precision.update_state(Y_TRUE[:10], Y_PRED[:10])
    before = precision.result()
    for y_true, y_pred, message in ((Y_TRUE[:5], Y_PRED[:6], "shape"), (IDS[:5] + 3, Y_PRED[:5], r"\[0, 3\)"),
                                    (Y_TRUE[:5] * 2, Y_PRED[:5], "0/1"), (Y_TRUE[:0], Y_PRED[:0], "N >= 1"),
                                    (Y_TRUE[:2], np.full((2, 3), np.nan), "NaN"),
                                    (np.array([["a"] * 3] * 2), Y_PRED[:2], "numeric")):
        with pytest.raises(ValueError, match=message):
            precision.update_state(y_true, y_pred)
    with pytest.raises(ValueError, match="sample_weight"):
        precision.update_state(Y_TRUE[:5], Y_PRED[:5], sample_weight=-np.ones(5))
    with pytest.raises(ValueError, match="class_id"):
        Precision(class_id=5).update_state(Y_TRUE[:5], Y_PRED[:5])
    f1 = F1Score()
    f1.update_state(Y_TRUE[:5], Y_PRED[:5])
    with pytest.raises(ValueError, match="classes"):
        f1.update_state(np.eye(4)[:2], np.eye(4)[:2])
    assert precision.result() == before


# -- in training -----------------------------------------------------------------------------------------

def blobs(n=90, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = (rng.normal(size=(n, 4)) + np.eye(3, 4)[y] * 1.2).astype(np.float32)
    return x, y


def test_compiled_metrics_log_the_whole_evaluation_and_epoch():
    x, y = blobs()
    net = Net(input_shape=(4,), seed=0, layers=[Dense(3, activation="softmax")])
    chosen = [Precision(), Recall(thresholds=0.4), AUC(), F1Score("macro"), "accuracy"]
    net.compile(loss="sparse_categorical_crossentropy", metrics=chosen)
    assert net.metrics_names == ["loss", "precision", "recall", "auc", "f1_score", "accuracy"]
    logs = net.evaluate(x, y, batch_size=16, return_dict=True)
    probs = net.predict(x)
    for metric in (Precision(), Recall(thresholds=0.4), AUC(), F1Score("macro")):
        metric.update_state(y, probs)
        assert logs[metric.name] == pytest.approx(metric.result(), abs=1e-6), metric.name
    assert net.evaluate(x, y, batch_size=90, return_dict=True) == pytest.approx(logs)
    history = net.fit(x, y, epochs=2, batch_size=16, validation_split=0.2, verbose=0)
    assert {"precision", "val_precision", "auc", "val_auc", "f1_score", "val_f1_score"} <= set(history.history)
    names = metrics.get("precision"), metrics.get("recall"), metrics.get("auc"), metrics.get("f1_score")
    assert [type(m) for m in names] == [Precision, Recall, AUC, F1Score]


def test_workers_log_the_same_stateful_metrics_as_one_process():
    x, y = blobs(128, seed=1)
    histories = []
    for workers in (1, 2):
        net = Net(input_shape=(4,), seed=3, dtype="float64", layers=[Dense(3, activation="softmax")])
        net.compile(loss="sparse_categorical_crossentropy", metrics=[Precision(), AUC(), F1Score()])
        histories.append(net.fit(x, y, epochs=2, batch_size=32, workers=workers, verbose=0).history)
    for key in ("precision", "auc", "f1_score"):
        np.testing.assert_allclose(histories[0][key], histories[1][key], rtol=1e-9, err_msg=key)


def test_stateful_metrics_are_saved_with_the_model(tmp_path):
    x, y = blobs()
    net = Net(input_shape=(4,), seed=0, layers=[Dense(3, activation="softmax")])
    net.compile(loss="sparse_categorical_crossentropy",
                metrics=[Precision(top_k=1, name="p1"), AUC(curve="PR", num_thresholds=50), F1Score("micro")])
    net.save(tmp_path / "m.h5")
    loaded = load_model(tmp_path / "m.h5")
    assert [(name, m.get_config()) for name, m in loaded.metrics] == \
        [(name, m.get_config()) for name, m in net.metrics]
    assert loaded.evaluate(x, y, return_dict=True) == pytest.approx(net.evaluate(x, y, return_dict=True))
