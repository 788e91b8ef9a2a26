"""Tests for modularcnn.losses and modularcnn.mathutils.

Oracles: values computed by hand or with Python's math module in scalar loops, and gradients
checked against centred finite differences in float64.
"""

import json
import math
import warnings

import numpy as np
import pytest

from modularcnn import losses
from modularcnn.losses import (
    BinaryCrossentropy,
    CategoricalCrossentropy,
    Huber,
    MeanAbsoluteError,
    MeanSquaredError,
    SparseCategoricalCrossentropy,
)
from modularcnn.mathutils import log_sigmoid, log_softmax, sigmoid, softmax

RNG = np.random.default_rng(0)


def numeric_gradient(f, x, h=1e-6):
    """Centred finite differences of the scalar function f at x (float64)."""
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        plus = f(x)
        x[i] = old - h
        minus = f(x)
        x[i] = old
        grad[i] = (plus - minus) / (2 * h)
    return grad


def relative_error(a, b):
    return np.max(np.abs(a - b)) / max(np.max(np.abs(a)), np.max(np.abs(b)), 1e-12)


def random_probs(n, k):
    return softmax(RNG.normal(size=(n, k)))


def gradient_cases():
    """(id, loss, y_true, y_pred) with y_pred away from clip boundaries and kinks."""
    n, k = 4, 5
    ids = np.array([0, 3, 4, 1])
    one_hot = np.eye(k)[ids]
    soft = random_probs(n, k)
    logits = RNG.normal(scale=2.0, size=(n, k))
    bin_targets = RNG.integers(0, 2, size=(n, 3)).astype(np.float64)
    reg_true = RNG.normal(size=(n, 3))
    # Regression predictions kept >= 0.1 away from y_true (MAE kink) and from |e| = delta (Huber).
    offsets = RNG.uniform(0.1, 0.8, size=(n, 3)) * RNG.choice([-1, 1], size=(n, 3))
    offsets[0, 0] = 2.5  # one element in Huber's linear region
    offsets[1, 1] = -1.7
    cce, bce = CategoricalCrossentropy, BinaryCrossentropy
    return [
        ("cce_probs_ids", cce(), ids, random_probs(n, k)),
        ("cce_probs_onehot", cce(), one_hot, random_probs(n, k)),
        ("cce_probs_soft_targets", cce(), soft, random_probs(n, k)),
        ("cce_probs_smoothing", cce(label_smoothing=0.2), ids, random_probs(n, k)),
        ("cce_logits_ids", cce(from_logits=True), ids, logits.copy()),
        ("cce_logits_soft", cce(from_logits=True), 0.5 * soft, logits.copy()),
        (
            "cce_logits_smoothing",
            cce(from_logits=True, label_smoothing=0.1),
            one_hot,
            logits.copy(),
        ),
        ("sparse_logits", SparseCategoricalCrossentropy(from_logits=True), ids, logits.copy()),
        ("bce_probs_nk", bce(), bin_targets, sigmoid(RNG.normal(size=(n, 3)))),
        ("bce_probs_n", bce(), bin_targets[:, 0], sigmoid(RNG.normal(size=n))),
        ("bce_probs_n1", bce(), bin_targets[:, :1], sigmoid(RNG.normal(size=(n, 1)))),
        ("bce_logits_nk", bce(from_logits=True), bin_targets, RNG.normal(size=(n, 3))),
        (
            "bce_logits_smoothing",
            bce(from_logits=True, label_smoothing=0.2),
            bin_targets,
            RNG.normal(size=(n, 3)),
        ),
        ("mse", MeanSquaredError(), reg_true, reg_true + offsets),
        ("mae", MeanAbsoluteError(), reg_true, reg_true + offsets),
        ("huber", Huber(), reg_true, reg_true + offsets),
        ("huber_delta", Huber(delta=0.5), reg_true, reg_true + offsets),
    ]


@pytest.mark.parametrize("case", gradient_cases(), ids=lambda c: c[0])
def test_gradient_matches_finite_differences(case):
    _, loss, y_true, y_pred = case
    y_pred = np.array(y_pred, dtype=np.float64)
    numeric = numeric_gradient(lambda p: loss(y_true, p), y_pred)
    value, analytic = loss.value_and_gradient(y_true, y_pred)
    assert analytic.shape == y_pred.shape
    assert relative_error(analytic, numeric) < 1e-6
    assert value == pytest.approx(loss(y_true, y_pred), rel=1e-12)
    np.testing.assert_array_equal(loss.gradient(y_true, y_pred), analytic)


@pytest.mark.parametrize(
    "loss, y_true, n_out",
    [
        (CategoricalCrossentropy(), np.array([2, 0, 1]), 4),
        (BinaryCrossentropy(), np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]]), 2),
    ],
)
def test_fused_logits_gradient_matches_finite_differences(loss, y_true, n_out):
    logits = RNG.normal(scale=3.0, size=(3, n_out))
    numeric = numeric_gradient(lambda z: loss.value_and_gradient_from_logits(y_true, z)[0], logits)
    _, analytic = loss.value_and_gradient_from_logits(y_true, logits)
    assert relative_error(analytic, numeric) < 1e-6


def test_fused_categorical_equals_softmax_then_probability_loss_by_chain_rule():
    # Independent route: loss on probabilities, gradient pushed back through the softmax Jacobian.
    logits = RNG.normal(size=(3, 4))
    ids = np.array([1, 3, 0])
    probs = softmax(logits)
    value_p, grad_p = CategoricalCrossentropy().value_and_gradient(ids, probs)
    grad_z = np.empty_like(logits)
    for n in range(3):
        jacobian = np.diag(probs[n]) - np.outer(probs[n], probs[n])  # d softmax / d z
        grad_z[n] = jacobian.T @ grad_p[n]
    value_z, fused = CategoricalCrossentropy().value_and_gradient_from_logits(ids, logits)
    assert value_z == pytest.approx(value_p, rel=1e-12)
    np.testing.assert_allclose(fused, grad_z, rtol=1e-10, atol=1e-14)
    # And the closed form (softmax - one_hot) / N.
    np.testing.assert_allclose(fused, (probs - np.eye(4)[ids]) / 3, rtol=1e-12)


def test_from_logits_flag_uses_fused_path():
    logits = RNG.normal(size=(5, 3))
    ids = np.array([0, 1, 2, 2, 1])
    loss = CategoricalCrossentropy(from_logits=True)
    fused_value, fused_grad = loss.value_and_gradient_from_logits(ids, logits)
    assert loss(ids, logits) == fused_value
    np.testing.assert_array_equal(loss.gradient(ids, logits), fused_grad)
    # The non-logit path on softmax(logits) agrees with the fused value.
    assert CategoricalCrossentropy()(ids, softmax(logits)) == pytest.approx(fused_value, rel=1e-12)


# ---- hand-computed values ---------------------------------------------------------------------


def test_categorical_crossentropy_hand_values():
    y_pred = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])
    expected = -(math.log(0.7) + math.log(0.8)) / 2
    assert CategoricalCrossentropy()(np.array([0, 1]), y_pred) == pytest.approx(expected, rel=1e-12)
    # Soft targets: -mean_n sum_k y log p.
    y_soft = np.array([[0.5, 0.5, 0.0], [0.0, 0.25, 0.75]])
    expected_soft = -(
        0.5 * math.log(0.7) + 0.5 * math.log(0.2) + 0.25 * math.log(0.8) + 0.75 * math.log(0.1)
    ) / 2
    assert CategoricalCrossentropy()(y_soft, y_pred) == pytest.approx(expected_soft, rel=1e-12)
    # Gradient w.r.t. probabilities: -y / (p N).
    grad = CategoricalCrossentropy().gradient(np.array([0, 1]), y_pred)
    np.testing.assert_allclose(grad, [[-1 / 1.4, 0, 0], [0, -1 / 1.6, 0]], rtol=1e-12)


def test_categorical_crossentropy_logits_hand_value():
    z = [1.0, 2.0, 3.0]
    log_sum = math.log(sum(math.exp(v) for v in z))
    loss = CategoricalCrossentropy(from_logits=True)
    assert loss(np.array([0]), np.array([z])) == pytest.approx(log_sum - 1.0, rel=1e-12)
    # Label smoothing 0.3 with K = 3: targets [0.8, 0.1, 0.1].
    smooth = CategoricalCrossentropy(from_logits=True, label_smoothing=0.3)
    expected = sum(t * (log_sum - v) for t, v in zip([0.8, 0.1, 0.1], z))
    assert smooth(np.array([0]), np.array([z])) == pytest.approx(expected, rel=1e-12)


def test_binary_crossentropy_hand_values():
    y_true = np.array([1.0, 0.0, 1.0, 0.0])
    p = np.array([0.9, 0.2, 0.4, 0.6])
    expected = -(math.log(0.9) + math.log(0.8) + math.log(0.4) + math.log(0.4)) / 4
    assert BinaryCrossentropy()(y_true, p) == pytest.approx(expected, rel=1e-12)
    # Same data as logits: log(p / (1 - p)).
    z = np.log(p / (1 - p))
    assert BinaryCrossentropy(from_logits=True)(y_true, z) == pytest.approx(expected, rel=1e-12)
    grad = BinaryCrossentropy(from_logits=True).gradient(y_true, z)
    np.testing.assert_allclose(grad, (p - y_true) / 4, rtol=1e-12)
    # (N, 1) predictions with (N,) targets give the same result.
    assert BinaryCrossentropy()(y_true, p[:, None]) == pytest.approx(expected, rel=1e-12)


def test_binary_crossentropy_on_masks_is_the_mean_over_every_pixel():
    """A segmentation mask (N, H, W, 1): each pixel is one yes/no output, as in Keras; the value, the
    gradient and the per-sample values equal those of the same numbers as (N, H*W) rows."""
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(2, 3, 5, 1))
    y_true = (rng.random((2, 3, 5, 1)) > 0.5).astype(float)
    rows_true, rows = y_true.reshape(2, 15), logits.reshape(2, 15)
    for loss in (BinaryCrossentropy(), BinaryCrossentropy(from_logits=True)):
        y_pred = logits if loss.from_logits else sigmoid(logits)
        flat_pred = rows if loss.from_logits else sigmoid(rows)
        assert loss(y_true, y_pred) == pytest.approx(loss(rows_true, flat_pred), rel=1e-12)
        np.testing.assert_allclose(loss.gradient(y_true, y_pred),
                                   loss.gradient(rows_true, flat_pred).reshape(2, 3, 5, 1), rtol=1e-12)
        np.testing.assert_allclose(loss.per_sample(y_true, y_pred),
                                   loss.per_sample(rows_true, flat_pred), rtol=1e-12)
    value, grad = BinaryCrossentropy().value_and_gradient_from_logits(y_true, logits)
    expected = -np.mean(y_true * log_sigmoid(logits) + (1 - y_true) * log_sigmoid(-logits))
    assert value == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(grad, (sigmoid(logits) - y_true) / 30, rtol=1e-12)


def test_regression_hand_values():
    y_true = np.array([[1.0, 2.0], [3.0, 4.0]])
    y_pred = np.array([[1.5, 0.0], [3.0, 7.0]])  # errors 0.5, -2, 0, 3
    assert MeanSquaredError()(y_true, y_pred) == pytest.approx((0.25 + 4 + 0 + 9) / 4)
    assert MeanAbsoluteError()(y_true, y_pred) == pytest.approx((0.5 + 2 + 0 + 3) / 4)
    # Huber delta=1: 0.125, 1 * (2 - 0.5), 0, 1 * (3 - 0.5).
    assert Huber()(y_true, y_pred) == pytest.approx((0.125 + 1.5 + 0 + 2.5) / 4)
    np.testing.assert_allclose(
        MeanSquaredError().gradient(y_true, y_pred), [[0.25, -1.0], [0.0, 1.5]]
    )
    np.testing.assert_allclose(
        MeanAbsoluteError().gradient(y_true, y_pred), [[0.25, -0.25], [0.0, 0.25]]
    )
    np.testing.assert_allclose(Huber().gradient(y_true, y_pred), [[0.125, -0.25], [0.0, 0.25]])


def test_regression_column_vector_is_reshaped_not_broadcast():
    y_true = np.array([1.0, 2.0, 3.0])
    y_pred = np.array([[1.0], [2.0], [5.0]])
    # A broadcasting bug would compare all 3 x 3 pairs; the right answer is 4 / 3.
    assert MeanSquaredError()(y_true, y_pred) == pytest.approx(4 / 3)
    assert MeanSquaredError().gradient(y_true, y_pred).shape == (3, 1)


def test_probabilities_are_clipped():
    # The true class has probability 0: the loss is -log(eps), not inf.
    loss = CategoricalCrossentropy()(np.array([1]), np.array([[1.0, 0.0]]))
    assert loss == pytest.approx(-math.log(1e-7), rel=1e-6)
    bce = BinaryCrossentropy()(np.array([1.0, 0.0]), np.array([0.0, 1.0]))
    assert bce == pytest.approx(-math.log(1e-7), rel=1e-6)
    grad = BinaryCrossentropy().gradient(np.array([1.0, 0.0]), np.array([0.0, 1.0]))
    assert np.all(np.isfinite(grad))


# ---- numerical robustness and dtypes ------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_logits_are_finite(dtype):
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]], dtype=dtype)
    ids = np.array([1, 2])
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        value, grad = CategoricalCrossentropy().value_and_gradient_from_logits(ids, logits)
        b_value, b_grad = BinaryCrossentropy(from_logits=True).value_and_gradient_from_logits(
            np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]), logits
        )
    # Sample 0 misses by 2e4, sample 1 is right with log-probability ~0.
    assert value == pytest.approx(1e4, rel=1e-6)
    np.testing.assert_allclose(grad, [[0.5, -0.5, 0.0], [0.0, 0.0, 0.0]], atol=1e-7)
    assert grad.dtype == dtype and b_grad.dtype == dtype
    # Of the 6 outputs only [1, 1] (logit -1e4, target 1) is wrong, costing 1e4; output [0, 2]
    # (logit 0, target 1) costs ln 2; the other four are right by 1e4 and cost ~0.
    assert b_value == pytest.approx((1e4 + math.log(2)) / 6, rel=1e-6)
    assert np.all(np.isfinite(b_grad))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", gradient_cases(), ids=lambda c: c[0])
def test_dtype_is_preserved(case, dtype):
    _, loss, y_true, y_pred = case
    y_pred = np.asarray(y_pred, dtype=dtype)
    # Targets given in float64 must not upcast float32 predictions.
    _, grad = loss.value_and_gradient(y_true, y_pred)
    assert grad.dtype == dtype
    if hasattr(loss, "value_and_gradient_from_logits"):
        assert loss.value_and_gradient_from_logits(y_true, y_pred)[1].dtype == dtype


def test_float32_matches_float64():
    logits = RNG.normal(size=(8, 10))
    ids = RNG.integers(0, 10, size=8)
    loss = CategoricalCrossentropy(from_logits=True)
    v64, g64 = loss.value_and_gradient(ids, logits)
    v32, g32 = loss.value_and_gradient(ids, logits.astype(np.float32))
    assert v32 == pytest.approx(v64, rel=1e-5)
    np.testing.assert_allclose(g32, g64, atol=1e-6)


# ---- sparse vs one-hot -------------------------------------------------------------------------


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_sparse_equals_one_hot(from_logits, label_smoothing):
    ids = np.array([2, 0, 1, 2, 3])
    y_pred = RNG.normal(size=(5, 4)) if from_logits else random_probs(5, 4)
    one_hot = np.eye(4)[ids]
    config = {"from_logits": from_logits, "label_smoothing": label_smoothing}
    reference = CategoricalCrossentropy(**config).value_and_gradient(one_hot, y_pred)
    for loss in (CategoricalCrossentropy(**config), SparseCategoricalCrossentropy(**config)):
        for targets in (ids, ids[:, None], ids.astype(np.float64), one_hot.astype(np.int64)):
            value, grad = loss.value_and_gradient(targets, y_pred)
            assert value == pytest.approx(reference[0], rel=1e-12)
            np.testing.assert_allclose(grad, reference[1], rtol=1e-12)


# ---- validation ---------------------------------------------------------------------------------


CCE = CategoricalCrossentropy()
HALF = np.full((2, 2), 0.5)


@pytest.mark.parametrize(
    "loss, y_true, y_pred, pattern",
    [
        (CCE, np.array([0, 1]), np.full((3, 2), 0.5), "same number of samples"),
        (CCE, np.array([0, 2]), HALF, r"\[0, 2\).*received 2"),
        (CCE, np.array([-1, 0]), HALF, "received -1"),
        (CCE, np.array([0.5, 1.0]), HALF, "integer class ids"),
        (CCE, np.array([0, 1]), np.full(2, 0.5), r"shape \(N, K\)"),
        (CCE, np.zeros((2, 3)), HALF, r"received shape \(2, 3\)"),
        (BinaryCrossentropy(), np.array([0.0, 2.0]), np.full(2, 0.5), r"values in \[0, 1\]"),
        (BinaryCrossentropy(), np.zeros((2, 3)), HALF, r"\(2, 2\).*\(2, 3\)"),
        (BinaryCrossentropy(), np.zeros(2), np.full((2, 2, 2), 0.5), "received shape"),
        (MeanSquaredError(), np.zeros(3), np.zeros((3, 2)), r"\(3, 2\).*\(3,\)"),
        (MeanSquaredError(), np.zeros(2), np.zeros(3), "same number of samples"),
        (MeanAbsoluteError(), np.zeros(0), np.zeros(0), "non-empty"),
        (Huber(), np.zeros((2, 2)), np.zeros((2, 3)), "expected y_true"),
    ],
)
def test_bad_inputs_raise_value_error(loss, y_true, y_pred, pattern):
    with pytest.raises(ValueError, match=pattern):
        loss(y_true, y_pred)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="label_smoothing"):
        CategoricalCrossentropy(label_smoothing=1.5)
    with pytest.raises(ValueError, match="label_smoothing"):
        BinaryCrossentropy(label_smoothing=-0.1)
    with pytest.raises(ValueError, match="delta"):
        Huber(delta=0)


# ---- config, names, get / serialize -------------------------------------------------------------

ALL_LOSSES = [
    CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
    SparseCategoricalCrossentropy(),
    BinaryCrossentropy(from_logits=True),
    MeanSquaredError(),
    MeanAbsoluteError(),
    Huber(delta=2.5),
]


@pytest.mark.parametrize("loss", ALL_LOSSES, ids=lambda loss: type(loss).__name__)
def test_config_round_trip(loss):
    config = loss.get_config()
    rebuilt = type(loss).from_config(json.loads(json.dumps(config)))
    assert type(rebuilt) is type(loss)
    assert rebuilt.get_config() == config
    again = losses.get(json.loads(json.dumps(losses.serialize(loss))))
    assert type(again) is type(loss) and again.get_config() == config


@pytest.mark.parametrize(
    "name, cls",
    [
        ("cross_entropy", CategoricalCrossentropy),
        ("crossentropy", CategoricalCrossentropy),
        ("categorical_crossentropy", CategoricalCrossentropy),
        ("Categorical_CrossEntropy", CategoricalCrossentropy),
        ("CategoricalCrossentropy", CategoricalCrossentropy),
        ("sparse_categorical_crossentropy", SparseCategoricalCrossentropy),
        ("binary_crossentropy", BinaryCrossentropy),
        ("BCE", BinaryCrossentropy),
        ("mse", MeanSquaredError),
        ("mean_squared_error", MeanSquaredError),
        ("l2", MeanSquaredError),
        ("mae", MeanAbsoluteError),
        ("mean_absolute_error", MeanAbsoluteError),
        ("L1", MeanAbsoluteError),
        ("huber", Huber),
    ],
)
def test_get_by_name(name, cls):
    assert type(losses.get(name)) is cls


def test_get_instance_and_dict():
    loss = Huber(delta=3.0)
    assert losses.get(loss) is loss
    built = losses.get({"class_name": "CategoricalCrossentropy", "config": {"from_logits": True}})
    assert isinstance(built, CategoricalCrossentropy) and built.from_logits
    assert losses.get({"class_name": "mse"}).name == "mean_squared_error"


def test_get_errors_list_valid_names():
    with pytest.raises(ValueError, match="categorical_crossentropy.*mse"):
        losses.get("contrastive_loss")
    with pytest.raises(ValueError, match="Invalid config"):
        losses.get({"class_name": "Huber", "config": {"bogus": 1}})
    with pytest.raises(ValueError, match="class_name"):
        losses.get({"config": {}})
    with pytest.raises(ValueError):
        losses.get(42)


def test_names():
    assert CategoricalCrossentropy().name == "categorical_crossentropy"
    assert SparseCategoricalCrossentropy().name == "sparse_categorical_crossentropy"
    assert BinaryCrossentropy().name == "binary_crossentropy"


# ---- math helpers -------------------------------------------------------------------------------


def test_softmax_and_log_softmax_match_naive_formula():
    z = RNG.normal(size=(4, 6))
    naive = np.array([[math.exp(v) / sum(math.exp(w) for w in row) for v in row] for row in z])
    np.testing.assert_allclose(softmax(z), naive, rtol=1e-12)
    np.testing.assert_allclose(log_softmax(z), np.log(naive), rtol=1e-12)
    # Shift invariance is what makes the max-subtraction legal.
    np.testing.assert_allclose(softmax(z + 1000.0), naive, rtol=1e-9)


def test_sigmoid_matches_naive_and_is_stable():
    z = np.linspace(-30, 30, 61)
    naive = np.array([1 / (1 + math.exp(-v)) for v in z])
    np.testing.assert_allclose(sigmoid(z), naive, rtol=1e-12)
    np.testing.assert_allclose(log_sigmoid(z), [math.log(v) for v in naive], rtol=1e-9, atol=1e-12)
    extreme = np.array([-1e4, -1000.0, 0.0, 1000.0, 1e4], dtype=np.float32)
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        s = sigmoid(extreme)
        ls = log_sigmoid(extreme)
        sm = softmax(extreme[None, :])
    assert s.dtype == np.float32 and ls.dtype == np.float32 and sm.dtype == np.float32
    np.testing.assert_array_equal(s, [0.0, 0.0, 0.5, 1.0, 1.0])
    assert ls[0] == pytest.approx(-1e4) and ls[-1] == 0.0
    np.testing.assert_allclose(sm.sum(), 1.0, rtol=1e-6)
