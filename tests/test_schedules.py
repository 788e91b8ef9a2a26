"""Tests for modularcnn.schedules against hand-computed learning rates."""

import json
import math

import numpy as np
import pytest

from modularcnn import schedules
from modularcnn.schedules import (
    CosineDecay,
    CosineDecayRestarts,
    ExponentialDecay,
    InverseTimeDecay,
    LearningRateSchedule,
    PiecewiseConstantDecay,
    PolynomialDecay,
    StepDecay,
)


def test_exponential_decay_continuous():
    s = ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    assert s(0) == pytest.approx(0.1)
    assert s(5) == pytest.approx(0.1 * 0.5**0.5)
    assert s(10) == pytest.approx(0.05)
    assert s(25) == pytest.approx(0.1 * 0.5**2.5)


def test_exponential_decay_staircase():
    s = ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5, staircase=True)
    assert [s(i) for i in (0, 9, 10, 19, 20)] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])


def test_step_decay():
    s = StepDecay(1.0, step_size=3, gamma=0.1)
    expected = [1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.01]
    assert [s(i) for i in range(7)] == pytest.approx(expected)
    assert StepDecay(0.5, step_size=2)(4) == pytest.approx(0.005)  # default gamma 0.1


def test_cosine_decay_without_warmup():
    s = CosineDecay(1.0, decay_steps=4)
    # 0.5 * (1 + cos(pi * t / 4)) for t = 0..4, then constant.
    expected = [1.0, 0.5 + 0.5 * math.sqrt(0.5), 0.5, 0.5 - 0.5 * math.sqrt(0.5), 0.0, 0.0]
    assert [s(i) for i in range(6)] == pytest.approx(expected, abs=1e-12)


def test_cosine_decay_alpha_and_warmup():
    s = CosineDecay(2.0, decay_steps=2, alpha=0.1, warmup_steps=4)
    # Warm-up 2.0 * t / 4 for t = 0..3; then 2.0 * (0.9 * 0.5 * (1 + cos(pi * s / 2)) + 0.1).
    expected = [0.0, 0.5, 1.0, 1.5, 2.0, 2.0 * (0.9 * 0.5 + 0.1), 0.2, 0.2]
    assert [s(i) for i in range(8)] == pytest.approx(expected, abs=1e-12)


def test_cosine_decay_warmup_target_follows_keras():
    # Keras 3: linear from initial_learning_rate to warmup_target over warmup_steps, then a
    # cosine from warmup_target down to alpha * warmup_target over decay_steps.
    s = CosineDecay(0.1, decay_steps=8, alpha=0.25, warmup_steps=4, warmup_target=0.5)
    assert s(0) == pytest.approx(0.1)
    assert s(1) == pytest.approx(0.1 + 0.4 / 4)
    assert s(3) == pytest.approx(0.1 + 0.4 * 3 / 4)
    assert s(4) == pytest.approx(0.5)
    for step in (5, 7, 10, 12, 100):
        done = min(step - 4, 8) / 8
        expected = 0.5 * (0.75 * 0.5 * (1 + math.cos(math.pi * done)) + 0.25)
        assert s(step) == pytest.approx(expected, rel=1e-12)
    assert s(12) == pytest.approx(0.125)
    # warmup_target with no warm-up steps: the decay starts from warmup_target at step 0.
    assert CosineDecay(0.1, 10, warmup_target=0.3)(0) == pytest.approx(0.3)


def test_inverse_time_decay():
    s = InverseTimeDecay(0.5, decay_steps=4, decay_rate=0.5)
    for step in (0, 1, 4, 7, 40):
        assert s(step) == pytest.approx(0.5 / (1 + 0.5 * step / 4), rel=1e-12)
    stairs = InverseTimeDecay(0.5, decay_steps=4, decay_rate=0.5, staircase=True)
    assert [stairs(i) for i in (0, 3, 4, 7, 8)] == pytest.approx([0.5, 0.5, 0.5 / 1.5, 0.5 / 1.5, 0.25])


def test_polynomial_decay_without_cycle():
    s = PolynomialDecay(1.0, decay_steps=10, end_learning_rate=0.1, power=2.0)
    for step in (0, 3, 10, 25):
        done = min(step, 10) / 10
        assert s(step) == pytest.approx(0.9 * (1 - done) ** 2 + 0.1, rel=1e-12)
    assert s(25) == pytest.approx(0.1)
    default = PolynomialDecay(0.01, 100)
    assert default(50) == pytest.approx((0.01 - 1e-4) * 0.5 + 1e-4)  # end 1e-4, power 1


def test_polynomial_decay_cycles_with_growing_periods():
    s = PolynomialDecay(1.0, decay_steps=10, end_learning_rate=0.0, power=1.0, cycle=True)
    assert s(0) == pytest.approx(1.0)  # ceil(0) = 0 counts as the first period
    assert s(5) == pytest.approx(0.5)
    assert s(10) == pytest.approx(0.0)
    assert s(15) == pytest.approx(1 - 15 / 20)  # second period spans 20 steps
    assert s(21) == pytest.approx(1 - 21 / 30)


def _restarts_by_walking(step, lr, first, t_mul, m_mul, alpha):
    """Independent oracle: walk period by period instead of Keras's closed form."""
    start, length, index = 0.0, float(first), 0
    while step >= start + length:
        start += length
        length *= t_mul
        index += 1
    fraction = (step - start) / length
    cosine = 0.5 * m_mul**index * (1 + math.cos(math.pi * fraction))
    return lr * ((1 - alpha) * cosine + alpha)


@pytest.mark.parametrize("t_mul, m_mul, alpha", [(2.0, 1.0, 0.0), (1.0, 0.5, 0.1), (1.5, 0.8, 0.2)])
def test_cosine_decay_restarts(t_mul, m_mul, alpha):
    s = CosineDecayRestarts(0.2, first_decay_steps=10, t_mul=t_mul, m_mul=m_mul, alpha=alpha)
    for step in (0, 1, 5, 9, 11, 15, 29, 31, 47, 75, 140):
        expected = _restarts_by_walking(step, 0.2, 10, t_mul, m_mul, alpha)
        assert s(step) == pytest.approx(expected, rel=1e-9, abs=1e-12), step
    if t_mul == 2.0:
        assert s(10) == pytest.approx(0.2)  # the first restart is back at the full rate


def test_new_schedules_drive_an_optimizer():
    from modularcnn.optimizers import SGD

    opt = SGD(PolynomialDecay(0.1, 2, end_learning_rate=0.0))
    params = {"w": np.zeros(1)}
    for _ in range(3):
        opt.apply(params, {"w": np.ones(1)})
    np.testing.assert_allclose(params["w"], [-(0.1 + 0.05 + 0.0)])


def test_piecewise_constant_decay_boundaries_inclusive():
    s = PiecewiseConstantDecay(boundaries=[3, 6], values=[1.0, 0.5, 0.1])
    expected = [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.1, 0.1]
    assert [s(i) for i in range(9)] == expected


def test_returns_python_float_and_accepts_numpy_ints():
    s = StepDecay(0.1, step_size=2)
    value = s(np.int64(3))
    assert type(value) is float and value == pytest.approx(0.01)


@pytest.mark.parametrize("step", [-1, 1.5, "3", True, None])
def test_bad_step(step):
    with pytest.raises(ValueError, match="step"):
        ExponentialDecay(0.1, 10, 0.9)(step)


@pytest.mark.parametrize(
    "build, pattern",
    [
        (lambda: ExponentialDecay(0.1, 0, 0.5), "decay_steps"),
        (lambda: ExponentialDecay(0.1, 10, 0.0), "decay_rate"),
        (lambda: ExponentialDecay(-0.1, 10, 0.5), "initial_learning_rate"),
        (lambda: StepDecay(0.1, step_size=0), "step_size"),
        (lambda: StepDecay(0.1, step_size=2.5), "step_size"),
        (lambda: CosineDecay(0.1, 10, alpha=1.5), "alpha"),
        (lambda: CosineDecay(0.1, 10, warmup_steps=-1), "warmup_steps"),
        (lambda: CosineDecay(0.1, 10, warmup_target=-1.0), "warmup_target"),
        (lambda: InverseTimeDecay(0.1, 0, 0.5), "decay_steps"),
        (lambda: InverseTimeDecay(0.1, 10, -0.5), "decay_rate"),
        (lambda: PolynomialDecay(0.1, 10, end_learning_rate=-1), "end_learning_rate"),
        (lambda: PolynomialDecay(0.1, 10, power=float("nan")), "power"),
        (lambda: CosineDecayRestarts(0.1, 0), "first_decay_steps"),
        (lambda: CosineDecayRestarts(0.1, 10, t_mul=0.0), "t_mul"),
        (lambda: CosineDecayRestarts(0.1, 10, alpha=2.0), "alpha"),
        (lambda: PiecewiseConstantDecay([1, 2], [0.1, 0.2]), "len"),
        (lambda: PiecewiseConstantDecay([5, 2], [0.1, 0.2, 0.3]), "increasing"),
        (lambda: PiecewiseConstantDecay([1.5], [0.1, 0.2]), "integers"),
    ],
)
def test_bad_arguments(build, pattern):
    with pytest.raises(ValueError, match=pattern):
        build()


ALL = [
    ExponentialDecay(0.1, 10, 0.5, staircase=True),
    StepDecay(0.1, 5, gamma=0.5),
    CosineDecay(0.1, 100, alpha=0.01, warmup_steps=10),
    PiecewiseConstantDecay([10, 20], [0.1, 0.01, 0.001]),
    CosineDecay(0.0, 50, alpha=0.1, warmup_steps=5, warmup_target=0.2),
    InverseTimeDecay(0.1, 7, 0.3, staircase=True),
    PolynomialDecay(0.1, 9, end_learning_rate=0.001, power=0.5, cycle=True),
    CosineDecayRestarts(0.1, 6, t_mul=1.5, m_mul=0.9, alpha=0.05),
]


@pytest.mark.parametrize("schedule", ALL, ids=lambda s: type(s).__name__)
def test_config_round_trip(schedule):
    config = schedule.get_config()
    rebuilt = type(schedule).from_config(json.loads(json.dumps(config)))
    assert rebuilt.get_config() == config
    assert [rebuilt(i) for i in range(0, 40, 3)] == [schedule(i) for i in range(0, 40, 3)]
    again = schedules.get(json.loads(json.dumps(schedules.serialize(schedule))))
    assert type(again) is type(schedule) and again.get_config() == config


def test_get():
    s = StepDecay(0.1, 2)
    assert schedules.get(s) is s
    config = {"initial_learning_rate": 1.0, "decay_steps": 5}
    built = schedules.get({"class_name": "cosine_decay", "config": config})
    assert isinstance(built, CosineDecay) and built(5) == 0.0
    assert isinstance(built, LearningRateSchedule)
    with pytest.raises(ValueError, match="cannot be built from its name alone"):
        schedules.get("StepDecay")
    with pytest.raises(ValueError, match="exponential_decay"):
        schedules.get("warm_restarts")
    with pytest.raises(ValueError, match="Invalid config"):
        schedules.get({"class_name": "StepDecay", "config": {"lr": 0.1}})
    with pytest.raises(ValueError):
        schedules.serialize(0.1)
