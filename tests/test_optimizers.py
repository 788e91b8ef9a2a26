"""Tests for modularcnn.optimizers.

The oracle for every update rule is an independent scalar re-implementation below: plain Python
floats, one parameter element at a time, written from the published (Keras) formulas.
"""

import json
import math

import numpy as np
import pytest

from modularcnn import optimizers
from modularcnn.optimizers import SGD, Adadelta, Adagrad, Adam, Adamax, AdamW, Lion, Nadam, RMSprop
from modularcnn.schedules import PiecewiseConstantDecay

RNG = np.random.default_rng(1)
SHAPES = {"dense_1/kernel": (2, 3), "dense_1/bias": (3,)}
STEPS = 5


def make_problem(dtype=np.float64):
    params = {k: RNG.normal(size=s).astype(dtype) for k, s in SHAPES.items()}
    grads = [{k: RNG.normal(size=s).astype(dtype) for k, s in SHAPES.items()} for _ in range(STEPS)]
    return params, grads


# ---- scalar reference implementations -----------------------------------------------------------


def ref_sgd(p, gs, lr, momentum=0.0, nesterov=False, wd=0.0):
    v = 0.0
    for g in gs:
        p = p - lr * wd * p
        if momentum == 0:
            p = p - lr * g
        else:
            v = momentum * v - lr * g
            p = p + (momentum * v - lr * g if nesterov else v)
    return p


def ref_adam(p, gs, lr, b1=0.9, b2=0.999, eps=1e-7, amsgrad=False, wd=0.0):
    m = v = vmax = 0.0
    for t, g in enumerate(gs, start=1):
        p = p - lr * wd * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vmax = max(vmax, v)
        alpha = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
        p = p - alpha * m / (math.sqrt(vmax if amsgrad else v) + eps)
    return p


def ref_rmsprop(p, gs, lr, rho=0.9, momentum=0.0, eps=1e-7, centered=False, wd=0.0):
    ms = mg = buf = 0.0
    for g in gs:
        p = p - lr * wd * p
        ms = rho * ms + (1 - rho) * g * g
        mg = rho * mg + (1 - rho) * g
        denom = ms - mg * mg + eps if centered else ms + eps
        increment = lr * g / math.sqrt(denom)
        if momentum > 0:
            buf = momentum * buf + increment
            p = p - buf
        else:
            p = p - increment
    return p


def ref_adagrad(p, gs, lr, init=0.1, eps=1e-7, wd=0.0):
    acc = init
    for g in gs:
        p = p - lr * wd * p
        acc = acc + g * g
        p = p - lr * g / math.sqrt(acc + eps)
    return p


def ref_adadelta(p, gs, lr, rho=0.95, eps=1e-7):
    acc_g = acc_d = 0.0
    for g in gs:
        acc_g = rho * acc_g + (1 - rho) * g * g
        delta = -math.sqrt(acc_d + eps) / math.sqrt(acc_g + eps) * g
        acc_d = rho * acc_d + (1 - rho) * delta * delta
        p = p + lr * delta
    return p


def ref_adamax(p, gs, lr, b1=0.9, b2=0.999, eps=1e-7):
    m = u = 0.0
    for t, g in enumerate(gs, start=1):
        m = b1 * m + (1 - b1) * g
        u = max(b2 * u, abs(g))
        p = p - lr / (1 - b1**t) * m / (u + eps)
    return p


def ref_nadam(p, gs, lr, b1=0.9, b2=0.999, eps=1e-7):
    """Dozat's NAdam as written in the Keras docs / source, scalar by scalar."""
    m = v = 0.0
    product = 1.0
    for t, g in enumerate(gs, start=1):
        mu = b1 * (1 - 0.5 * 0.96**t)
        mu_next = b1 * (1 - 0.5 * 0.96 ** (t + 1))
        product *= mu
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = mu_next * m / (1 - product * mu_next) + (1 - mu) * g / (1 - product)
        v_hat = v / (1 - b2**t)
        p = p - lr * m_hat / (math.sqrt(v_hat) + eps)
    return p


def ref_lion(p, gs, lr, b1=0.9, b2=0.99):
    m = 0.0
    for g in gs:
        c = b1 * m + (1 - b1) * g
        p = p - lr * (1.0 if c > 0 else -1.0 if c < 0 else 0.0)
        m = b2 * m + (1 - b2) * g
    return p


def reference(params, grads, ref, **kwargs):
    """Apply a scalar reference rule to every element of every parameter."""
    out = {}
    for key, p in params.items():
        flat = [ref(float(p.flat[i]), [float(g[key].flat[i]) for g in grads], **kwargs)
                for i in range(p.size)]
        out[key] = np.array(flat).reshape(p.shape)
    return out


CASES = [
    ("sgd", lambda: SGD(0.1), ref_sgd, {"lr": 0.1}),
    ("sgd_momentum", lambda: SGD(0.1, momentum=0.9), ref_sgd, {"lr": 0.1, "momentum": 0.9}),
    (
        "sgd_nesterov",
        lambda: SGD(0.05, momentum=0.8, nesterov=True),
        ref_sgd,
        {"lr": 0.05, "momentum": 0.8, "nesterov": True},
    ),
    ("sgd_wd", lambda: SGD(0.1, weight_decay=0.5), ref_sgd, {"lr": 0.1, "wd": 0.5}),
    ("adam", lambda: Adam(0.01), ref_adam, {"lr": 0.01}),
    (
        "adam_custom",
        lambda: Adam(0.02, beta_1=0.5, beta_2=0.9, epsilon=1e-3),
        ref_adam,
        {"lr": 0.02, "b1": 0.5, "b2": 0.9, "eps": 1e-3},
    ),
    ("amsgrad", lambda: Adam(0.01, amsgrad=True), ref_adam, {"lr": 0.01, "amsgrad": True}),
    ("adamw", lambda: AdamW(0.01), ref_adam, {"lr": 0.01, "wd": 0.004}),
    ("adamw_big_wd", lambda: AdamW(0.01, weight_decay=0.3), ref_adam, {"lr": 0.01, "wd": 0.3}),
    ("rmsprop", lambda: RMSprop(0.01), ref_rmsprop, {"lr": 0.01}),
    (
        "rmsprop_momentum",
        lambda: RMSprop(0.01, rho=0.8, momentum=0.5),
        ref_rmsprop,
        {"lr": 0.01, "rho": 0.8, "momentum": 0.5},
    ),
    (
        "rmsprop_centered",
        lambda: RMSprop(0.01, centered=True, momentum=0.3),
        ref_rmsprop,
        {"lr": 0.01, "centered": True, "momentum": 0.3},
    ),
    ("adagrad", lambda: Adagrad(0.1), ref_adagrad, {"lr": 0.1}),
    (
        "adagrad_custom",
        lambda: Adagrad(0.05, initial_accumulator_value=0.0, epsilon=1e-3, weight_decay=0.1),
        ref_adagrad,
        {"lr": 0.05, "init": 0.0, "eps": 1e-3, "wd": 0.1},
    ),
    ("adadelta", lambda: Adadelta(1.0), ref_adadelta, {"lr": 1.0}),
    ("adadelta_custom", lambda: Adadelta(0.5, rho=0.8, epsilon=1e-4), ref_adadelta,
     {"lr": 0.5, "rho": 0.8, "eps": 1e-4}),
    ("adamax", lambda: Adamax(0.01), ref_adamax, {"lr": 0.01}),
    ("adamax_custom", lambda: Adamax(0.02, beta_1=0.5, beta_2=0.8, epsilon=1e-3), ref_adamax,
     {"lr": 0.02, "b1": 0.5, "b2": 0.8, "eps": 1e-3}),
    ("nadam", lambda: Nadam(0.01), ref_nadam, {"lr": 0.01}),
    ("nadam_custom", lambda: Nadam(0.02, beta_1=0.7, beta_2=0.9, epsilon=1e-3), ref_nadam,
     {"lr": 0.02, "b1": 0.7, "b2": 0.9, "eps": 1e-3}),
    ("lion", lambda: Lion(0.01), ref_lion, {"lr": 0.01}),
    ("lion_custom", lambda: Lion(0.03, beta_1=0.5, beta_2=0.9), ref_lion,
     {"lr": 0.03, "b1": 0.5, "b2": 0.9}),
]


# PyTorch counterparts, with the settings under which PyTorch computes Keras's formula (or, where
# only epsilon's placement differs, a tolerance that covers it).
TORCH_CASES = [
    ("Adagrad", lambda: Adagrad(0.1, initial_accumulator_value=0.1, epsilon=1e-12),
     lambda torch, ps: torch.optim.Adagrad(ps, lr=0.1, initial_accumulator_value=0.1, eps=1e-12),
     1e-9),
    ("Adadelta", lambda: Adadelta(1.0, rho=0.9, epsilon=1e-6),
     lambda torch, ps: torch.optim.Adadelta(ps, lr=1.0, rho=0.9, eps=1e-6), 1e-12),
    ("Adamax", lambda: Adamax(0.01, epsilon=1e-12),
     lambda torch, ps: torch.optim.Adamax(ps, lr=0.01, eps=1e-12), 1e-9),
    ("Nadam", lambda: Nadam(0.01),
     lambda torch, ps: torch.optim.NAdam(ps, lr=0.01, eps=1e-7, momentum_decay=1.0), 1e-12),
]


@pytest.mark.parametrize("case", TORCH_CASES, ids=lambda c: c[0])
def test_matches_pytorch(case):
    torch = pytest.importorskip("torch")
    _, build, build_torch, tol = case
    params, grads = make_problem()
    tensors = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in params.items()}
    reference_opt = build_torch(torch, list(tensors.values()))
    opt = build()
    for g in grads:
        opt.apply(params, g)
        for k, t in tensors.items():
            t.grad = torch.tensor(g[k])
        reference_opt.step()
    for k in params:
        np.testing.assert_allclose(params[k], tensors[k].detach().numpy(), rtol=tol, atol=tol)


def test_adagrad_state_starts_at_the_initial_accumulator():
    opt = Adagrad(initial_accumulator_value=0.25)
    opt.build({"w": np.zeros((2, 3), np.float32)})
    state = opt.get_state()
    assert state["accumulator/w"].dtype == np.float32
    np.testing.assert_array_equal(state["accumulator/w"], np.full((2, 3), 0.25, np.float32))


def test_lion_moves_every_weight_by_exactly_the_learning_rate():
    params = {"w": np.zeros(5)}
    Lion(0.125).apply(params, {"w": np.array([3.0, -1e-6, 0.0, 2.0, -7.0])})
    np.testing.assert_array_equal(params["w"], [-0.125, 0.125, 0.0, -0.125, 0.125])


@pytest.mark.parametrize("case", CASES, ids=lambda c: c[0])
def test_matches_scalar_reference(case):
    _, build, ref, kwargs = case
    params, grads = make_problem()
    expected = reference(params, grads, ref, **kwargs)
    opt = build()
    arrays = dict(params)  # same array objects
    for g in grads:
        opt.apply(params, g)
    assert opt.iterations == STEPS
    for key in params:
        assert params[key] is arrays[key]  # updated in place
        np.testing.assert_allclose(params[key], expected[key], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c[0])
def test_float32_stays_float32(case):
    _, build, ref, kwargs = case
    params, grads = make_problem(np.float32)
    expected = reference(params, grads, ref, **kwargs)
    opt = build()
    for g in grads:
        opt.apply(params, g)
    for key, p in params.items():
        assert p.dtype == np.float32
        np.testing.assert_allclose(p, expected[key], rtol=1e-4, atol=1e-5)
    for name, array in opt.get_state().items():
        assert array.dtype == (np.int64 if name == "iterations" else np.float32), name


def test_weight_decay_alone_shrinks_geometrically():
    params = {"w": np.array([1.0, -2.0, 4.0])}
    opt = Adam(0.1, weight_decay=0.5)
    for _ in range(3):
        opt.apply(params, {"w": np.zeros(3)})  # Adam's step is exactly 0 for zero gradients
    np.testing.assert_allclose(params["w"], np.array([1.0, -2.0, 4.0]) * 0.95**3, rtol=1e-12)


# ---- clipping -----------------------------------------------------------------------------------


def test_clipvalue():
    params = {"a": np.zeros(3)}
    grads = {"a": np.array([5.0, -5.0, 0.5])}
    SGD(1.0, clipvalue=1.0).apply(params, grads)
    np.testing.assert_allclose(params["a"], [-1.0, 1.0, -0.5])
    np.testing.assert_array_equal(grads["a"], [5.0, -5.0, 0.5])  # caller's gradient untouched


def test_clipnorm_is_per_array():
    params = {"a": np.zeros(2), "b": np.zeros(2)}
    grads = {"a": np.array([3.0, 4.0]), "b": np.array([0.3, 0.4])}  # norms 5 and 0.5
    SGD(1.0, clipnorm=1.0).apply(params, grads)
    np.testing.assert_allclose(params["a"], [-0.6, -0.8])
    np.testing.assert_allclose(params["b"], [-0.3, -0.4])
    np.testing.assert_array_equal(grads["a"], [3.0, 4.0])


def test_global_clipnorm_scales_all_arrays_together():
    params = {"a": np.zeros(2), "b": np.zeros(1)}
    grads = {"a": np.array([3.0, 4.0]), "b": np.array([12.0])}  # global norm 13
    SGD(1.0, global_clipnorm=1.0).apply(params, grads)
    np.testing.assert_allclose(params["a"], [-3 / 13, -4 / 13])
    np.testing.assert_allclose(params["b"], [-12 / 13])
    np.testing.assert_array_equal(grads["b"], [12.0])
    # Below the threshold nothing changes.
    params = {"a": np.zeros(2)}
    SGD(1.0, global_clipnorm=10.0).apply(params, {"a": np.array([3.0, 4.0])})
    np.testing.assert_allclose(params["a"], [-3.0, -4.0])


def test_clipvalue_then_norm():
    params = {"a": np.zeros(2)}
    # clipvalue 3 gives [3, 3] (norm sqrt 18), then clipnorm sqrt 2 scales it to [1, 1].
    SGD(1.0, clipvalue=3.0, clipnorm=math.sqrt(2)).apply(params, {"a": np.array([10.0, 4.0])})
    np.testing.assert_allclose(params["a"], [-1.0, -1.0])


def test_clipping_preserves_float32():
    params = {"a": np.zeros(2, np.float32)}
    SGD(1.0, global_clipnorm=1.0, clipvalue=10.0).apply(params, {"a": np.array([3, 4], np.float32)})
    assert params["a"].dtype == np.float32
    np.testing.assert_allclose(params["a"], [-0.6, -0.8], rtol=1e-6)


# ---- state --------------------------------------------------------------------------------------


def test_state_is_lazy_and_named():
    opt = Adam()
    state = opt.get_state()
    assert list(state) == ["iterations"]
    assert state["iterations"].dtype == np.int64 and state["iterations"].shape == ()
    params, grads = make_problem(np.float32)
    opt.apply(params, grads[0])
    assert set(opt.get_state()) == {
        "iterations", "m/dense_1/kernel", "v/dense_1/kernel", "m/dense_1/bias", "v/dense_1/bias"
    }
    assert opt.get_state()["m/dense_1/kernel"].shape == (2, 3)
    assert set(SGD(momentum=0.0).slot_names()) == set()
    assert set(RMSprop(momentum=0.1, centered=True).slot_names()) == {
        "velocity", "momentum", "average_grad"
    }


def test_build_creates_zero_state():
    params, _ = make_problem()
    opt = SGD(momentum=0.9)
    opt.build(params)
    state = opt.get_state()
    assert set(state) == {"iterations", "momentum/dense_1/kernel", "momentum/dense_1/bias"}
    assert not np.any(state["momentum/dense_1/kernel"])


@pytest.mark.parametrize("case", CASES, ids=lambda c: c[0])
def test_state_round_trip_continues_identically(case):
    _, build, _, _ = case
    params, grads = make_problem()
    opt = build()
    for g in grads[:3]:
        opt.apply(params, g)
    saved_params = {k: v.copy() for k, v in params.items()}
    state = opt.get_state()

    restored = type(opt).from_config(json.loads(json.dumps(opt.get_config())))
    restored.set_state(state)
    assert restored.iterations == 3
    for g in grads[3:]:
        opt.apply(params, g)
        restored.apply(saved_params, g)
    for key in params:
        np.testing.assert_array_equal(params[key], saved_params[key])


def test_get_state_returns_copies():
    params, grads = make_problem()
    opt = Adam()
    opt.apply(params, grads[0])
    state = opt.get_state()
    state["m/dense_1/bias"][:] = 99.0
    assert not np.any(opt.get_state()["m/dense_1/bias"] == 99.0)


def _bad_states():
    params, grads = make_problem()
    opt = Adam()
    opt.apply(params, grads[0])
    good = opt.get_state()

    def changed(**updates):
        state = dict(good)
        for name, value in updates.items():
            state[name.replace("__", "/")] = value
        return state

    wrong_shape = changed(m__dense_1__bias=np.zeros(4))
    wrong_dtype = changed(m__dense_1__bias=np.zeros(3, np.float32))
    unknown = changed(momentum__dense_1__bias=np.zeros(3))
    missing = {k: v for k, v in good.items() if k != "v/dense_1/kernel"}
    no_iterations = {k: v for k, v in good.items() if k != "iterations"}
    bad_iterations = changed(iterations=np.array(1.5))
    int_state = changed(m__dense_1__bias=np.zeros(3, np.int64))
    return opt, [
        (wrong_shape, "shape"),
        (wrong_dtype, "dtype"),
        (unknown, "unexpected state name"),
        (missing, "missing"),
        (no_iterations, "iterations"),
        (bad_iterations, "iterations"),
        (int_state, "floating"),
    ]


def test_set_state_validates_before_changing_anything():
    opt, bad_states = _bad_states()
    before = opt.get_state()
    for state, pattern in bad_states:
        with pytest.raises(ValueError, match=pattern):
            opt.set_state(state)
        after = opt.get_state()
        assert set(after) == set(before)
        for name in before:
            np.testing.assert_array_equal(after[name], before[name])


def test_set_state_on_fresh_optimizer_checks_consistency():
    fresh = Adam()
    with pytest.raises(ValueError, match="missing"):
        fresh.set_state({"iterations": np.array(2), "m/w": np.zeros(3)})  # no "v/w"
    with pytest.raises(ValueError, match="shape"):
        fresh.set_state({"iterations": np.array(2), "m/w": np.zeros(3), "v/w": np.zeros(4)})
    with pytest.raises(ValueError, match="unexpected state name"):
        SGD().set_state({"iterations": np.array(2), "momentum/w": np.zeros(3)})
    fresh.set_state({"iterations": np.array(2), "m/w": np.ones(3), "v/w": np.ones(3)})
    assert fresh.iterations == 2
    # The restored state must fit the parameters it is used with.
    with pytest.raises(ValueError, match="different model"):
        fresh.apply({"w": np.zeros(4)}, {"w": np.zeros(4)})


# ---- learning rate ------------------------------------------------------------------------------


def test_schedule_learning_rate_follows_iterations():
    schedule = PiecewiseConstantDecay([1], [1.0, 0.1])
    opt = SGD(schedule)
    params = {"w": np.zeros(1)}
    rates = []
    for _ in range(4):
        rates.append(opt.current_learning_rate)
        opt.apply(params, {"w": np.ones(1)})
    assert rates == [1.0, 1.0, 0.1, 0.1]  # step 0 and 1 use values[0]
    np.testing.assert_allclose(params["w"], [-2.2])
    assert opt.learning_rate is schedule


def test_learning_rate_is_settable():
    opt = SGD(0.1)
    params = {"w": np.zeros(1, np.float32)}
    opt.learning_rate = 0.5
    assert opt.current_learning_rate == 0.5
    opt.apply(params, {"w": np.ones(1, np.float32)})
    np.testing.assert_allclose(params["w"], [-0.5])
    opt.learning_rate = np.float32(0.25)  # numpy scalars are accepted and stored as float
    assert type(opt.learning_rate) is float
    with pytest.raises(ValueError, match="learning_rate"):
        opt.learning_rate = -1.0
    with pytest.raises(ValueError, match="learning_rate"):
        opt.learning_rate = "fast"


# ---- convergence --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "opt, steps",
    [
        (SGD(0.1), 200),
        (SGD(0.05, momentum=0.9, nesterov=True), 200),
        (Adam(0.1), 300),
        (AdamW(0.1, weight_decay=1e-4), 300),
        (RMSprop(0.05), 300),
        (RMSprop(0.01, momentum=0.9, centered=True), 300),
        (Adagrad(0.5), 300),
        (Adadelta(10.0), 1000),
        (Adamax(0.1), 300),
        (Nadam(0.1), 300),
        (Lion(0.003), 2000),
    ],
    ids=lambda x: type(x).__name__ if not isinstance(x, int) else str(x),
)
def test_converges_on_quadratic(opt, steps):
    # f(w) = 0.5 * sum(c * (w - target)^2), gradient c * (w - target).
    c = np.array([1.0, 2.0, 0.5, 3.0], dtype=np.float32)
    target = np.array([1.0, -2.0, 3.0, 0.5], dtype=np.float32)
    params = {"w": np.zeros(4, np.float32)}
    start = 0.5 * np.sum(c * target**2)
    for _ in range(steps):
        opt.apply(params, {"w": c * (params["w"] - target)})
    loss = 0.5 * np.sum(c * (params["w"] - target) ** 2)
    assert params["w"].dtype == np.float32
    assert loss < 1e-3 * start


# ---- input validation, config, names ------------------------------------------------------------


def test_apply_rejects_mismatched_inputs():
    opt = SGD()
    with pytest.raises(ValueError, match=r"missing for \['b'\]"):
        opt.apply({"a": np.zeros(2), "b": np.zeros(2)}, {"a": np.zeros(2)})
    with pytest.raises(ValueError, match=r"shape \(3,\), expected .*\(2,\)"):
        opt.apply({"a": np.zeros(2)}, {"a": np.zeros(3)})
    with pytest.raises(ValueError, match="floating"):
        opt.apply({"a": np.zeros(2, np.int64)}, {"a": np.zeros(2)})
    read_only = np.zeros(2)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        opt.apply({"a": read_only}, {"a": np.zeros(2)})
    assert opt.iterations == 0


@pytest.mark.parametrize(
    "build, pattern",
    [
        (lambda: SGD(momentum=-0.1), "momentum"),
        (lambda: Adam(beta_1=1.0), "beta_1"),
        (lambda: Adam(epsilon=0), "epsilon"),
        (lambda: RMSprop(rho=1.5), "rho"),
        (lambda: SGD(weight_decay=-1), "weight_decay"),
        (lambda: Adagrad(initial_accumulator_value=-0.1), "initial_accumulator_value"),
        (lambda: Adagrad(epsilon=None), "epsilon"),
        (lambda: Adadelta(rho=1.0), "rho"),
        (lambda: Adamax(beta_2=-0.1), "beta_2"),
        (lambda: Nadam(beta_1=1.0), "beta_1"),
        (lambda: Lion(beta_1=0.0), "beta_1"),
        (lambda: Lion(beta_2=1.0), "beta_2"),
        (lambda: SGD(clipnorm=0), "clipnorm"),
        (lambda: SGD(clipnorm=1.0, global_clipnorm=1.0), "at most one"),
    ],
)
def test_bad_hyperparameters(build, pattern):
    with pytest.raises(ValueError, match=pattern):
        build()


ALL = [
    SGD(0.2, momentum=0.5, nesterov=True, clipvalue=2.0),
    Adam(0.003, beta_1=0.8, amsgrad=True, global_clipnorm=1.0),
    AdamW(weight_decay=0.01, clipnorm=3.0),
    RMSprop(0.01, rho=0.95, momentum=0.1, centered=True),
    SGD(PiecewiseConstantDecay([5], [0.1, 0.01])),
    Adagrad(0.01, initial_accumulator_value=0.5, epsilon=1e-6, clipnorm=2.0),
    Adadelta(1.0, rho=0.9, epsilon=1e-6, weight_decay=0.01),
    Adamax(0.002, beta_1=0.8, beta_2=0.99, epsilon=1e-5),
    Nadam(0.002, beta_1=0.85, global_clipnorm=1.0),
    Lion(1e-4, beta_1=0.95, beta_2=0.98, weight_decay=0.1),
]


@pytest.mark.parametrize("opt", ALL, ids=lambda o: type(o).__name__)
def test_config_round_trip(opt):
    config = opt.get_config()
    rebuilt = type(opt).from_config(json.loads(json.dumps(config)))
    assert rebuilt.get_config() == config
    again = optimizers.get(json.loads(json.dumps(optimizers.serialize(opt))))
    assert type(again) is type(opt) and again.get_config() == config


def test_get():
    assert type(optimizers.get("sgd")) is SGD
    assert type(optimizers.get("Adam")) is Adam
    assert type(optimizers.get("ADAMW")) is AdamW
    assert type(optimizers.get("rmsprop")) is RMSprop
    opt = Adam()
    assert optimizers.get(opt) is opt
    assert optimizers.get({"class_name": "SGD", "config": {"momentum": 0.9}}).momentum == 0.9
    for name, cls in [("adagrad", Adagrad), ("Adadelta", Adadelta), ("ADAMAX", Adamax),
                      ("nadam", Nadam), ("lion", Lion)]:
        assert type(optimizers.get(name)) is cls
    with pytest.raises(ValueError, match="adam.*sgd"):
        optimizers.get("adabelief")
    with pytest.raises(ValueError, match="Invalid config"):
        optimizers.get({"class_name": "SGD", "config": {"lr": 0.1}})
