"""Keras 3's further losses (kl_divergence, hinge, squared_hinge, log_cosh, poisson,
cosine_similarity, categorical_focal_crossentropy) and custom losses.

Oracles: each value against a naive per-element loop written from the Keras docs formula; each
gradient against centred finite differences in float64 (``modularcnn.gradcheck.numerical_gradient``)
on odd shapes and a batch of 1.
"""

import json
import math

import numpy as np
import pytest

from modularcnn import Net, losses
from modularcnn.gradcheck import numerical_gradient, relative_error
from modularcnn.layers import Dense

RNG = np.random.default_rng(3)
EPS = 1e-7


def _rows(a):
    return a.reshape(-1, a.shape[-1]) if a.ndim > 1 else a.reshape(1, -1)


def naive_kl(t, p):
    rows = [sum(max(min(a, 1), EPS) * math.log(max(min(a, 1), EPS) / max(min(b, 1), EPS))
                for a, b in zip(rt, rp)) for rt, rp in zip(_rows(t), _rows(p))]
    return sum(rows) / len(rows)


def naive_elementwise(per_element):
    def loss(t, p):
        values = [per_element(a, b) for a, b in zip(t.ravel(), p.ravel())]
        return sum(values) / len(values)
    return loss


def _pm(t):
    return 2 * t - 1 if np.all((t == 0) | (t == 1)) else t


def naive_hinge(t, p):
    return naive_elementwise(lambda a, b: max(1 - a * b, 0))(_pm(t), p)


def naive_squared_hinge(t, p):
    return naive_elementwise(lambda a, b: max(1 - a * b, 0) ** 2)(_pm(t), p)


naive_log_cosh = naive_elementwise(lambda a, b: math.log(math.cosh(b - a)))
naive_poisson = naive_elementwise(lambda a, b: b - a * math.log(b + EPS))


def naive_cosine(t, p):
    rows = []
    for rt, rp in zip(_rows(t), _rows(p)):
        nt = math.sqrt(max(sum(a * a for a in rt), 1e-12))
        n_p = math.sqrt(max(sum(b * b for b in rp), 1e-12))
        rows.append(-sum(a * b for a, b in zip(rt, rp)) / (nt * n_p))
    return sum(rows) / len(rows)


def naive_focal(t, p, alpha=0.25, gamma=2.0, logits=False):
    total = 0.0
    for rt, rp in zip(t, p):
        if logits:
            e = [math.exp(v - max(rp)) for v in rp]
            rp = [v / sum(e) for v in e]
        else:
            rp = [min(max(v / sum(rp), EPS), 1 - EPS) for v in rp]
        total += sum(-alpha * (1 - q) ** gamma * y * math.log(q) for y, q in zip(rt, rp))
    return total / len(t)


def probabilities(shape):
    p = RNG.uniform(0.05, 1.0, size=shape)
    return p / p.sum(axis=-1, keepdims=True)


def one_hot(n, k):
    return np.eye(k)[RNG.integers(0, k, n)]


# name -> (loss object, naive oracle, y_true maker, y_pred maker)
CASES = {
    "kl_divergence": (losses.KLDivergence(), naive_kl, probabilities, probabilities),
    "hinge_binary": (losses.Hinge(), naive_hinge,
                     lambda s: RNG.integers(0, 2, s).astype(float), lambda s: RNG.normal(size=s)),
    "hinge_signed": (losses.Hinge(), naive_hinge,
                     lambda s: RNG.choice([-1.0, 1.0], s), lambda s: RNG.normal(size=s)),
    "squared_hinge": (losses.SquaredHinge(), naive_squared_hinge,
                      lambda s: RNG.integers(0, 2, s).astype(float), lambda s: RNG.normal(size=s)),
    "log_cosh": (losses.LogCosh(), naive_log_cosh,
                 lambda s: RNG.normal(size=s), lambda s: 2 * RNG.normal(size=s)),
    "poisson": (losses.Poisson(), naive_poisson,
                lambda s: RNG.poisson(2.0, s).astype(float), lambda s: RNG.uniform(0.2, 3, s)),
    "cosine_similarity": (losses.CosineSimilarity(), naive_cosine,
                          lambda s: RNG.normal(size=s), lambda s: RNG.normal(size=s)),
    "focal": (losses.CategoricalFocalCrossentropy(), naive_focal,
              lambda s: one_hot(*s), probabilities),
    "focal_soft_targets": (losses.CategoricalFocalCrossentropy(alpha=0.5, gamma=1.5),
                           lambda t, p: naive_focal(t, p, 0.5, 1.5), probabilities,
                           lambda s: RNG.uniform(0.1, 2.0, s)),  # unnormalised: Keras divides by the sum
    "focal_logits": (losses.CategoricalFocalCrossentropy(gamma=3.0, from_logits=True),
                     lambda t, p: naive_focal(t, p, 0.25, 3.0, logits=True),
                     lambda s: one_hot(*s), lambda s: 3 * RNG.normal(size=s)),
}
SHAPES = [(1, 5), (3, 7), (4, 2)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", sorted(CASES))
def test_value_matches_naive_formula_and_gradient_matches_finite_differences(name, shape):
    loss, naive, make_true, make_pred = CASES[name]
    y_true, y_pred = make_true(shape), make_pred(shape)
    value, grad = loss.value_and_gradient(y_true, y_pred)
    assert value == pytest.approx(naive(y_true, y_pred), rel=1e-10, abs=1e-12)
    assert grad.shape == y_pred.shape and grad.dtype == np.float64
    numeric = numerical_gradient(lambda: loss(y_true, y_pred), y_pred)
    assert relative_error(grad, numeric) < 1e-6


@pytest.mark.parametrize("name", ["hinge_binary", "log_cosh", "poisson", "kl_divergence"])
def test_elementwise_losses_on_three_dimensional_outputs(name):
    loss, naive, make_true, make_pred = CASES[name]
    y_true, y_pred = make_true((2, 3, 5)), make_pred((2, 3, 5))
    assert loss(y_true, y_pred) == pytest.approx(naive(y_true, y_pred), rel=1e-10)
    numeric = numerical_gradient(lambda: loss(y_true, y_pred), y_pred)
    assert relative_error(loss.gradient(y_true, y_pred), numeric) < 1e-6


def test_float32_in_float32_out_and_values_keras_documents():
    y_true = np.array([[0.0, 1.0], [0.0, 0.0]], np.float32)
    y_pred = np.array([[0.6, 0.4], [0.4, 0.6]], np.float32)
    for loss in (losses.KLDivergence(), losses.Hinge(), losses.LogCosh(), losses.Poisson()):
        assert loss.gradient(y_true, y_pred).dtype == np.float32
    # The examples in the Keras docs (keras.io/api/losses): hinge 1.3, squared hinge 1.86,
    # log_cosh 0.108, poisson 0.5, cosine_similarity -0.5 (for its own example).
    assert losses.Hinge()(y_true, y_pred) == pytest.approx(1.3, rel=1e-6)
    assert losses.SquaredHinge()(y_true, y_pred) == pytest.approx(1.86, rel=1e-6)
    assert losses.LogCosh()(y_true, [[1.0, 1.0], [0.0, 0.0]]) == pytest.approx(0.108, abs=1e-3)
    assert losses.Poisson()(y_true, [[1.0, 1.0], [0.0, 0.0]]) == pytest.approx(0.5, abs=1e-6)
    cos = losses.CosineSimilarity()([[0.0, 1.0], [1.0, 1.0]], [[1.0, 0.0], [1.0, 1.0]])
    assert cos == pytest.approx(-0.5, abs=1e-6)


def test_focal_with_gamma_zero_and_alpha_one_is_cross_entropy():
    y, logits = one_hot(5, 4), RNG.normal(size=(5, 4))
    focal = losses.CategoricalFocalCrossentropy(alpha=1.0, gamma=0.0, from_logits=True)
    plain = losses.CategoricalCrossentropy(from_logits=True)
    v1, g1 = focal.value_and_gradient(y, logits)
    v2, g2 = plain.value_and_gradient(y, logits)
    assert v1 == pytest.approx(v2, rel=1e-12)
    np.testing.assert_allclose(g1, g2, rtol=1e-10, atol=1e-14)


def test_focal_from_logits_is_finite_for_extreme_logits():
    y = np.array([[1.0, 0.0, 0.0]])
    logits = np.array([[800.0, -800.0, 0.0]])
    value, grad = losses.CategoricalFocalCrossentropy(from_logits=True).value_and_gradient(y, logits)
    assert np.isfinite(value) and np.all(np.isfinite(grad))


def test_cosine_gradient_with_a_zero_prediction_is_finite():
    value, grad = losses.CosineSimilarity().value_and_gradient([[1.0, 2.0]], [[0.0, 0.0]])
    assert value == 0.0 and np.all(np.isfinite(grad))


def test_focal_loss_on_a_softmax_network_matches_finite_differences_through_the_fused_path():
    # A softmax output with the focal loss goes through Objective's fused logits path; every
    # parameter gradient of the whole float64 network matches finite differences of the loss.
    from modularcnn.training.objective import Objective

    net = Net(input_shape=(5,), seed=2, dtype="float64")
    net.add(Dense(4, activation="tanh"))
    net.add(Dense(3, activation="softmax"))
    net.compile(optimizer="sgd", loss=losses.CategoricalFocalCrossentropy(gamma=2.0))
    x, y = RNG.normal(size=(3, 5)), np.array([0, 2, 1])
    objective = Objective(net)
    assert objective.mode == "fused"
    objective.backpropagate(x, y)
    for layer in net.layers:
        for key, param in layer.params.items():
            analytic = np.array(layer.grads[key])
            numeric = numerical_gradient(lambda: net.loss(y, net.forward(x, training=True)), param)
            assert relative_error(analytic, numeric) < 1e-6, f"{layer.name}/{key}"


def _loss_of(result):
    return result["loss"] if isinstance(result, dict) else result


def test_training_with_each_new_loss_decreases_it():
    x = RNG.normal(size=(64, 6)).astype(np.float32)
    labels = (x[:, 0] + x[:, 1] > 0).astype(int)
    y_hot = np.eye(2, dtype=np.float32)[labels]
    setups = [
        ("categorical_focal_crossentropy", "softmax", labels),
        ("kl_divergence", "softmax", y_hot),
        ("hinge", None, y_hot * 2 - 1),
        ("squared_hinge", None, y_hot),
        ("log_cosh", None, y_hot),
        ("poisson", "sigmoid", y_hot),
        ("cosine_similarity", None, y_hot),
    ]
    for name, activation, y in setups:
        net = Net(input_shape=(6,), seed=1)
        net.add(Dense(2, activation=activation))
        net.compile(optimizer="adam", loss=name)
        first = net.evaluate(x, y, verbose=0, return_dict=True)
        net.fit(x, y, epochs=15, batch_size=16, verbose=0)
        last = net.evaluate(x, y, verbose=0, return_dict=True)
        assert _loss_of(last) < _loss_of(first), name


ALL = [losses.KLDivergence(), losses.Hinge(), losses.SquaredHinge(), losses.LogCosh(),
       losses.Poisson(), losses.CosineSimilarity(),
       losses.CategoricalFocalCrossentropy(alpha=0.4, gamma=1.0, from_logits=True,
                                           label_smoothing=0.1)]


@pytest.mark.parametrize("loss", ALL, ids=lambda l: type(l).__name__)
def test_config_round_trip(loss):
    config = json.loads(json.dumps(losses.serialize(loss)))
    again = losses.get(config)
    assert type(again) is type(loss) and again.get_config() == loss.get_config()


def test_keras_names():
    for name, cls in [("kl_divergence", losses.KLDivergence), ("KLD", losses.KLDivergence),
                      ("hinge", losses.Hinge), ("squared_hinge", losses.SquaredHinge),
                      ("log_cosh", losses.LogCosh), ("poisson", losses.Poisson),
                      ("cosine_similarity", losses.CosineSimilarity),
                      ("categorical_focal_crossentropy", losses.CategoricalFocalCrossentropy)]:
        assert type(losses.get(name)) is cls


def test_bad_arguments():
    with pytest.raises(ValueError, match="gamma"):
        losses.CategoricalFocalCrossentropy(gamma=-1)
    with pytest.raises(ValueError, match="alpha"):
        losses.CategoricalFocalCrossentropy(alpha=float("nan"))
    with pytest.raises(ValueError, match="axis"):
        losses.CosineSimilarity(axis=0)
    with pytest.raises(ValueError, match="shape"):
        losses.Hinge()(np.zeros((2, 3)), np.zeros((2, 4)))


# ---- custom losses ----------------------------------------------------------------------------


def squared_log_error(y_true, y_pred):
    return ((np.log1p(y_pred) - np.log1p(y_true)) ** 2).sum(axis=-1)


def squared_log_error_gradient(y_true, y_pred):
    return 2 * (np.log1p(y_pred) - np.log1p(y_true)) / (1 + y_pred)


def test_custom_loss_value_gradient_and_config():
    loss = losses.custom(squared_log_error, squared_log_error_gradient)
    y_true, y_pred = RNG.uniform(0, 2, (3, 4)), RNG.uniform(0, 2, (3, 4))
    assert loss(y_true, y_pred) == pytest.approx(squared_log_error(y_true, y_pred).mean())
    numeric = numerical_gradient(lambda: loss(y_true, y_pred), y_pred)
    assert relative_error(loss.gradient(y_true, y_pred), numeric) < 1e-6
    assert loss.name == "squared_log_error"
    again = losses.get(json.loads(json.dumps(losses.serialize(loss))))
    assert again.fn is squared_log_error and again.gradient_fn is squared_log_error_gradient


def test_custom_loss_trains_saves_and_loads(tmp_path):
    from modularcnn import load_model

    x = RNG.uniform(0, 1, (32, 3)).astype(np.float32)
    y = np.stack([x.sum(1), x[:, 0]], axis=1)
    net = Net(input_shape=(3,), seed=0)
    net.add(Dense(2, activation="relu"))
    net.compile(optimizer="adam", loss=losses.custom(squared_log_error, squared_log_error_gradient))
    before = net.evaluate(x, y, verbose=0, return_dict=True)
    net.fit(x, y, epochs=10, batch_size=8, verbose=0)
    after = net.evaluate(x, y, verbose=0, return_dict=True)
    assert _loss_of(after) < _loss_of(before)
    net.save(tmp_path / "m.h5")
    loaded = load_model(tmp_path / "m.h5")
    assert isinstance(loaded.loss, losses.CustomLoss) and loaded.loss.fn is squared_log_error


def test_custom_loss_refusals():
    with pytest.raises(ValueError, match="losses.custom"):
        losses.get(squared_log_error)
    lam = losses.custom(lambda t, p: (p - t) ** 2, lambda t, p: 2 * (p - t))
    assert lam(np.zeros((2, 2)), np.ones((2, 2))) == 1.0
    with pytest.raises(ValueError, match="lambdas"):
        lam.get_config()
    wrong = losses.custom(squared_log_error, lambda t, p: np.zeros(3))
    with pytest.raises(ValueError, match="shaped like y_pred"):
        wrong(np.zeros((2, 2)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="callables"):
        losses.custom(squared_log_error, 3)


def test_custom_loss_trains_with_worker_processes_like_one_process():
    x = RNG.uniform(0, 1, (32, 3)).astype(np.float32)
    y = np.stack([x.sum(1), x[:, 0]], axis=1)

    def run(workers):
        net = Net(input_shape=(3,), seed=0)
        net.add(Dense(2, activation="relu"))
        net.compile(optimizer="sgd",
                    loss=losses.custom(squared_log_error, squared_log_error_gradient))
        net.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0, workers=workers)
        return net.get_weights()

    for a, b in zip(run(1), run(2)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
