"""Learning-rate schedules: callables mapping the optimizer's step count to a learning rate.

An optimizer built with ``learning_rate=ExponentialDecay(...)`` calls the schedule with its
``iterations`` counter before each update, so step 0 is the first update.
"""

import math
import numbers

from .catalog import Catalog, Configurable

__all__ = [
    "LearningRateSchedule",
    "ExponentialDecay",
    "StepDecay",
    "CosineDecay",
    "PiecewiseConstantDecay",
    "InverseTimeDecay",
    "PolynomialDecay",
    "CosineDecayRestarts",
    "get",
    "serialize",
]


def _positive_int(value, what, owner):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{owner}: {what} must be a positive integer, received {value!r}.")
    return int(value)


def _non_negative_float(value, what, owner):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
        raise ValueError(f"{owner}: {what} must be a number >= 0, received {value!r}.")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{owner}: {what} must be finite, received {value!r}.")
    return value


class LearningRateSchedule(Configurable):
    """Base class. ``schedule(step) -> float`` for integer ``step >= 0``.

    Subclasses implement ``_learning_rate_at(step)`` for an already validated Python int.
    """

    def __call__(self, step):
        """Return the learning rate (a Python float) for optimizer step ``step`` (0-based)."""
        if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
            raise ValueError(
                f"{type(self).__name__}: step must be an integer >= 0, received {step!r}."
            )
        return float(self._learning_rate_at(int(step)))

    def _learning_rate_at(self, step):
        raise NotImplementedError

    def get_config(self):
        """Return the constructor's keyword arguments (JSON-serialisable)."""
        raise NotImplementedError



class _RatioDecay(LearningRateSchedule):
    """Shared by the decays driven by ``step / decay_steps`` (floored with ``staircase=True``)."""

    #: Whether ``decay_rate == 0`` is meaningless for this schedule (it is for exponential decay).
    _needs_positive_rate = False

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False):
        name = type(self).__name__
        self.initial_learning_rate = _non_negative_float(
            initial_learning_rate, "initial_learning_rate", name
        )
        self.decay_steps = _positive_int(decay_steps, "decay_steps", name)
        self.decay_rate = _non_negative_float(decay_rate, "decay_rate", name)
        if self._needs_positive_rate and self.decay_rate == 0:
            raise ValueError(f"{name}: decay_rate must be positive, received {decay_rate!r}.")
        self.staircase = bool(staircase)

    def _ratio(self, step):
        ratio = step / self.decay_steps
        return math.floor(ratio) if self.staircase else ratio

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "decay_rate": self.decay_rate,
            "staircase": self.staircase,
        }


class ExponentialDecay(_RatioDecay):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)``.

    With ``staircase=True`` the exponent is ``floor(step / decay_steps)``, so the rate drops in
    discrete jumps every ``decay_steps`` steps.
    """

    _needs_positive_rate = True

    def _learning_rate_at(self, step):
        return self.initial_learning_rate * self.decay_rate ** self._ratio(step)


class StepDecay(LearningRateSchedule):
    """``initial_learning_rate * gamma ** floor(step / step_size)`` (PyTorch's ``StepLR``)."""

    def __init__(self, initial_learning_rate, step_size, gamma=0.1):
        name = type(self).__name__
        self.initial_learning_rate = _non_negative_float(
            initial_learning_rate, "initial_learning_rate", name
        )
        self.step_size = _positive_int(step_size, "step_size", name)
        self.gamma = _non_negative_float(gamma, "gamma", name)

    def _learning_rate_at(self, step):
        try:
            return self.initial_learning_rate * self.gamma ** (step // self.step_size)
        except OverflowError:  # a growing gamma (> 1) past float range: an infinite rate, as NumPy
            return math.inf

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "step_size": self.step_size,
            "gamma": self.gamma,
        }


class CosineDecay(LearningRateSchedule):
    """Optional linear warm-up, then a half-cosine down to ``alpha`` times the peak rate (Keras).

    With ``warmup_target`` set (Keras 3): for ``step < warmup_steps`` the rate rises linearly from
    ``initial_learning_rate`` to ``warmup_target``, then with ``s = min(step - warmup_steps,
    decay_steps)`` it is ``warmup_target * ((1 - alpha) * 0.5 * (1 + cos(pi * s / decay_steps)) +
    alpha)``.

    Without ``warmup_target`` the peak is ``initial_learning_rate``; ``warmup_steps > 0`` then
    warms up from 0 (``initial_learning_rate * step / warmup_steps``), which is this library's
    older spelling of ``CosineDecay(0.0, ..., warmup_target=initial_learning_rate)``. (Keras
    ignores ``warmup_steps`` when ``warmup_target`` is None.)
    """

    def __init__(
        self, initial_learning_rate, decay_steps, alpha=0.0, warmup_steps=0, warmup_target=None
    ):
        name = type(self).__name__
        self.initial_learning_rate = _non_negative_float(
            initial_learning_rate, "initial_learning_rate", name
        )
        self.decay_steps = _positive_int(decay_steps, "decay_steps", name)
        self.alpha = _non_negative_float(alpha, "alpha", name)
        if self.alpha > 1:
            raise ValueError(f"{name}: alpha must lie in [0, 1], received {alpha!r}.")
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, numbers.Integral) or (
            warmup_steps < 0
        ):
            raise ValueError(
                f"{name}: warmup_steps must be an integer >= 0, received {warmup_steps!r}."
            )
        self.warmup_steps = int(warmup_steps)
        self.warmup_target = (
            None if warmup_target is None
            else _non_negative_float(warmup_target, "warmup_target", name)
        )

    def _learning_rate_at(self, step):
        if self.warmup_target is None:
            start, peak = 0.0, self.initial_learning_rate
        else:
            start, peak = self.initial_learning_rate, self.warmup_target
        if step < self.warmup_steps:
            return start + (peak - start) * step / self.warmup_steps
        progress = min(step - self.warmup_steps, self.decay_steps) / self.decay_steps
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        return peak * ((1 - self.alpha) * cosine + self.alpha)

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "alpha": self.alpha,
            "warmup_steps": self.warmup_steps,
            "warmup_target": self.warmup_target,
        }


class InverseTimeDecay(_RatioDecay):
    """``initial_learning_rate / (1 + decay_rate * step / decay_steps)`` (Keras).

    With ``staircase=True`` the ratio ``step / decay_steps`` is floored.
    """

    def _learning_rate_at(self, step):
        return self.initial_learning_rate / (1 + self.decay_rate * self._ratio(step))


class PolynomialDecay(LearningRateSchedule):
    """Polynomial decay from ``initial_learning_rate`` to ``end_learning_rate`` (Keras)::

        (initial - end) * (1 - s / D) ** power + end

    Without ``cycle``: ``s = min(step, decay_steps)`` and ``D = decay_steps``, so the rate stays at
    ``end_learning_rate`` afterwards. With ``cycle=True``: ``s = step`` and ``D = decay_steps *
    ceil(step / decay_steps)`` (at least ``decay_steps``), so the decay restarts, ever longer.
    """

    def __init__(
        self, initial_learning_rate, decay_steps, end_learning_rate=0.0001, power=1.0, cycle=False
    ):
        name = type(self).__name__
        self.initial_learning_rate = _non_negative_float(
            initial_learning_rate, "initial_learning_rate", name
        )
        self.decay_steps = _positive_int(decay_steps, "decay_steps", name)
        self.end_learning_rate = _non_negative_float(end_learning_rate, "end_learning_rate", name)
        self.power = _non_negative_float(power, "power", name)
        self.cycle = bool(cycle)

    def _learning_rate_at(self, step):
        if self.cycle:
            span = self.decay_steps * max(1, math.ceil(step / self.decay_steps))
        else:
            span, step = self.decay_steps, min(step, self.decay_steps)
        fraction = 1 - step / span
        return (self.initial_learning_rate - self.end_learning_rate) * fraction**self.power + (
            self.end_learning_rate
        )

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "end_learning_rate": self.end_learning_rate,
            "power": self.power,
            "cycle": self.cycle,
        }


class CosineDecayRestarts(LearningRateSchedule):
    """Cosine decay with warm restarts, SGDR (Loshchilov & Hutter), as Keras.

    Period ``i`` (from 0) lasts ``first_decay_steps * t_mul**i`` steps and starts at
    ``initial_learning_rate * m_mul**i``; within a period at fraction ``f`` the rate is
    ``initial_learning_rate * ((1 - alpha) * m_mul**i * 0.5 * (1 + cos(pi * f)) + alpha)``.
    """

    def __init__(self, initial_learning_rate, first_decay_steps, t_mul=2.0, m_mul=1.0, alpha=0.0):
        name = type(self).__name__
        self.initial_learning_rate = _non_negative_float(
            initial_learning_rate, "initial_learning_rate", name
        )
        self.first_decay_steps = _positive_int(first_decay_steps, "first_decay_steps", name)
        self.t_mul = _non_negative_float(t_mul, "t_mul", name)
        if self.t_mul <= 0:
            raise ValueError(f"{name}: t_mul must be positive, received {t_mul!r}.")
        self.m_mul = _non_negative_float(m_mul, "m_mul", name)
        self.alpha = _non_negative_float(alpha, "alpha", name)
        if self.alpha > 1:
            raise ValueError(f"{name}: alpha must lie in [0, 1], received {alpha!r}.")

    def _learning_rate_at(self, step):
        fraction = step / self.first_decay_steps
        if self.t_mul == 1.0:
            restart = math.floor(fraction)
            fraction -= restart
        else:
            restart = math.floor(math.log(1 - fraction * (1 - self.t_mul)) / math.log(self.t_mul))
            completed = (1 - self.t_mul**restart) / (1 - self.t_mul)  # periods before, in units
            fraction = (fraction - completed) / self.t_mul**restart
        cosine = 0.5 * self.m_mul**restart * (1 + math.cos(math.pi * fraction))
        return self.initial_learning_rate * ((1 - self.alpha) * cosine + self.alpha)

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "first_decay_steps": self.first_decay_steps,
            "t_mul": self.t_mul,
            "m_mul": self.m_mul,
            "alpha": self.alpha,
        }


class PiecewiseConstantDecay(LearningRateSchedule):
    """Constant learning rates between step boundaries (Keras semantics).

    ``values[0]`` for ``step <= boundaries[0]``, ``values[i]`` for
    ``boundaries[i - 1] < step <= boundaries[i]``, and ``values[-1]`` for ``step > boundaries[-1]``.

    Parameters
    ----------
    boundaries : list of int, strictly increasing
    values : list of float, one more than ``boundaries``
    """

    def __init__(self, boundaries, values):
        name = type(self).__name__
        for what, given in (("boundaries", boundaries), ("values", values)):
            if not isinstance(given, (list, tuple)):
                raise ValueError(f"{name}: {what} must be a list, received {given!r}.")
        boundaries = list(boundaries)
        values = list(values)
        if len(values) != len(boundaries) + 1:
            raise ValueError(
                f"{name}: expected len(values) == len(boundaries) + 1 = {len(boundaries) + 1}, "
                f"received {len(values)} values for {len(boundaries)} boundaries."
            )
        for b in boundaries:
            if isinstance(b, bool) or not isinstance(b, numbers.Integral):
                raise ValueError(f"{name}: boundaries must be integers, received {b!r}.")
        if any(b1 >= b2 for b1, b2 in zip(boundaries, boundaries[1:])):
            raise ValueError(
                f"{name}: boundaries must be strictly increasing, received {boundaries}."
            )
        self.boundaries = [int(b) for b in boundaries]
        self.values = [_non_negative_float(v, "values", name) for v in values]

    def _learning_rate_at(self, step):
        for boundary, value in zip(self.boundaries, self.values):
            if step <= boundary:
                return value
        return self.values[-1]

    def get_config(self):
        return {"boundaries": list(self.boundaries), "values": list(self.values)}


# --------------------------------------------------------------------------------------------
# Look-up by name / config
# --------------------------------------------------------------------------------------------

_CATALOG = Catalog(
    "learning-rate schedule", LearningRateSchedule,
    (ExponentialDecay, StepDecay, CosineDecay, PiecewiseConstantDecay, InverseTimeDecay,
     PolynomialDecay, CosineDecayRestarts),
    {"exponential_decay": ExponentialDecay, "step_decay": StepDecay, "cosine_decay": CosineDecay,
     "piecewise_constant_decay": PiecewiseConstantDecay, "inverse_time_decay": InverseTimeDecay,
     "polynomial_decay": PolynomialDecay, "cosine_decay_restarts": CosineDecayRestarts},
)


def get(identifier):
    """Return a schedule from an instance (unchanged) or a ``{"class_name", "config"}`` dict.

    A bare name is accepted only for completeness: every schedule needs constructor arguments, so
    ``get("cosine_decay")`` raises a ValueError that says which ones.
    """
    return _CATALOG.get(identifier)


def serialize(schedule):
    """Return ``{"class_name": ..., "config": ...}``; ``get`` turns it back into a schedule."""
    return _CATALOG.serialize(schedule)
