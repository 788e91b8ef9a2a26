"""Tests for modularcnn.schedules against hand-computed learning rates."""

import json
import math

import numpy as np
import pytest

from modularcnn import schedules
from modularcnn.schedules import (
    CosineDecay,
    ExponentialDecay,
    LearningRateSchedule,
    PiecewiseConstantDecay,
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
