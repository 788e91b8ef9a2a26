"""Projections applied to weights after every optimizer step: ``MaxNorm``, ``NonNeg``, ``UnitNorm``,
``MinMaxNorm``, as in Keras 3 (``keras.constraints``).

A constraint is an object ``c`` with ``c(w) -> array``: the projected weights (shape and dtype of
``w``). Layers take them as ``kernel_constraint=``, ``bias_constraint=`` (and ``depthwise_constraint=``,
``pointwise_constraint=``, PReLU's ``alpha_constraint=``); ``fit`` and ``train_on_batch`` write
``c(w)`` into the weights after each optimizer step (in place: data-parallel workers share them), as
Keras's optimizer does.

Norms are taken over ``axis`` (an int or a list of ints) with ``keepdims``, then every weight is scaled
by ``desired / (1e-7 + norm)`` (Keras's epsilon). Keras's default ``axis=0`` means, literally, axis 0:
for a Dense kernel ``(in, units)`` that is the norm of each unit's incoming weights; for a convolution
kernel ``(kh, kw, C, filters)`` it is the norm along the kernel's *rows* only, for every ``(kw, C,
filters)`` — give ``axis=[0, 1, 2]`` for the norm of each filter, as Keras's documentation advises.

Named by a string (``"max_norm"``, ``"non_neg"``, ``"unit_norm"``, ``"min_max_norm"`` or the class
names, with Keras's defaults), an object, a lowercase alias (``max_norm(3)``, the classes as in Keras
3), a config dict (ours, or Keras's ``{"module": "keras.constraints", "class_name": "MaxNorm", ...}``),
or any callable ``w -> w'`` of your own (saved by its ``__name__``; :func:`register` it to load it).
"""

import numbers

import numpy as np

from . import validation
from .catalog import Configurable, split_config

#: Keras's ``backend.epsilon()``, added to norms before dividing.
EPSILON = 1e-7


class Constraint(Configurable):
    """Base class: ``__call__(w)`` returns the projected weights; the identity by default."""

    def __call__(self, w):
        return w

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash((type(self), repr(self.get_config())))


def _axis(axis, owner):
    """An int or a list of ints (JSON: a list), as Keras takes it."""
    if validation.is_integer(axis):
        return validation.axis(axis, "axis", owner)
    if isinstance(axis, (list, tuple)) and axis and all(validation.is_integer(a) for a in axis):
        axes = [validation.axis(a, "axis", owner) for a in axis]
        if len(set(axes)) != len(axes):
            validation.fail(owner, "axis", "an int or a list of distinct ints", axis)
        return axes
    validation.fail(owner, "axis", "an int or a non-empty list of ints", axis)


def _norms(w, axis):
    axes = tuple(axis) if isinstance(axis, list) else axis
    try:
        return np.sqrt(np.sum(np.square(w), axis=axes, keepdims=True))
    except np.exceptions.AxisError:
        raise ValueError(f"constraint axis={axis!r} does not exist in weights of shape {w.shape}") from None


class MaxNorm(Constraint):
    """Scale weights whose norm over ``axis`` exceeds ``max_value`` back to ``max_value``."""

    def __init__(self, max_value=2, axis=0):
        self.max_value = validation.non_negative_number(max_value, "max_value", "MaxNorm")
        if isinstance(max_value, numbers.Integral):
            self.max_value = int(max_value)  # configs keep Keras's int default as an int
        self.axis = _axis(axis, "MaxNorm")

    def __call__(self, w):
        norms = _norms(w, self.axis)
        desired = np.clip(norms, 0, self.max_value)
        return (w * (desired / (EPSILON + norms))).astype(w.dtype, copy=False)

    def get_config(self):
        return {"max_value": self.max_value, "axis": self.axis}


class NonNeg(Constraint):
    """``max(w, 0)``."""

    def __call__(self, w):
        return np.maximum(w, 0).astype(w.dtype, copy=False)


class UnitNorm(Constraint):
    """Divide by the norm over ``axis``: every slice gets norm 1 (up to the epsilon)."""

    def __init__(self, axis=0):
        self.axis = _axis(axis, "UnitNorm")

    def __call__(self, w):
        return (w / (EPSILON + _norms(w, self.axis))).astype(w.dtype, copy=False)

    def get_config(self):
        return {"axis": self.axis}


class MinMaxNorm(Constraint):
    """Move each norm over ``axis`` towards ``[min_value, max_value]``: the new norm is
    ``rate * clip(norm, min_value, max_value) + (1 - rate) * norm``."""

    def __init__(self, min_value=0.0, max_value=1.0, rate=1.0, axis=0):
        self.min_value = validation.non_negative_number(min_value, "min_value", "MinMaxNorm")
        self.max_value = validation.non_negative_number(max_value, "max_value", "MinMaxNorm")
        if self.max_value < self.min_value:
            raise ValueError(f"MinMaxNorm: max_value={max_value!r} is below min_value={min_value!r}")
        self.rate = validation.real(rate, "rate", "MinMaxNorm", minimum=0, maximum=1)
        self.axis = _axis(axis, "MinMaxNorm")

    def __call__(self, w):
        norms = _norms(w, self.axis)
        desired = self.rate * np.clip(norms, self.min_value, self.max_value) + (1 - self.rate) * norms
        return (w * (desired / (EPSILON + norms))).astype(w.dtype, copy=False)

    def get_config(self):
        return {"min_value": self.min_value, "max_value": self.max_value, "rate": self.rate,
                "axis": self.axis}


#: Keras 3's lowercase names are its classes.
max_norm, non_neg, unit_norm, min_max_norm = MaxNorm, NonNeg, UnitNorm, MinMaxNorm

_CLASSES = {cls.__name__: cls for cls in (MaxNorm, NonNeg, UnitNorm, MinMaxNorm)}
_BY_NAME = {"max_norm": MaxNorm, "maxnorm": MaxNorm, "non_neg": NonNeg, "nonneg": NonNeg,
            "unit_norm": UnitNorm, "unitnorm": UnitNorm, "min_max_norm": MinMaxNorm,
            "minmaxnorm": MinMaxNorm}
_CUSTOM = {}


def register(name, function):
    """Make a callable ``w -> w'`` available by ``name`` (in configs and model files)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"constraint name must be a non-empty string, got {name!r}")
    if name.lower() in _BY_NAME:
        raise ValueError(f"constraint name {name!r} is taken by a built-in constraint")
    if not callable(function):
        raise ValueError(f"a constraint is a callable w -> w', got {function!r}")
    _CUSTOM[name] = function
    return function


def names():
    """The valid constraint names: built-in and registered."""
    return sorted(set(_BY_NAME) | set(_CLASSES) | set(_CUSTOM))


def _from_name(name):
    if name in _CUSTOM:
        return _CUSTOM[name]
    cls = _BY_NAME.get(name.lower())
    if cls is None:
        raise ValueError(f"unknown constraint {name!r}; valid names: {', '.join(names())} (a custom "
                         "one must be registered with modularcnn.constraints.register before a model "
                         "using it is loaded)")
    return cls()


def deserialize(config):
    """A constraint from ``{"class_name": ..., "config": {...}}`` (ours, Keras 3's or Keras 2's);
    ``{"class_name": "function", "config": {"name": ...}}`` is a registered callable."""
    class_name, options = split_config(
        config, "constraint", "register a callable under its name instead")
    if class_name == "function" or class_name in _CUSTOM:
        return _from_name(options.get("name", class_name))
    cls = _CLASSES.get(class_name) or _BY_NAME.get(class_name.lower())
    if cls is None:
        raise ValueError(f"unknown constraint class {class_name!r}; supported: "
                         f"{', '.join(sorted(_CLASSES))} and registered names")
    try:
        return cls(**options)
    except TypeError as error:
        raise ValueError(f"invalid config for constraint {class_name}: {error}") from None


def get(identifier, owner="constraint"):
    """A constraint (or None) from any form the module docstring lists; ValueError naming ``owner``."""
    try:
        if identifier is None or isinstance(identifier, Constraint):
            return identifier
        if isinstance(identifier, str):
            return _from_name(identifier)
        if isinstance(identifier, dict):
            return deserialize(identifier)
        if isinstance(identifier, type) and issubclass(identifier, Constraint):
            return identifier()
        if callable(identifier):
            return identifier
        raise ValueError(f"expected None, a name ({', '.join(names())}), a Constraint, a config "
                         f"dict or a callable w -> w', got {validation.describe_value(identifier)}")
    except ValueError as error:
        raise ValueError(f"{owner}: {error}") from None


def serialize(constraint):
    """``{"class_name": ..., "config": {...}}`` for a config, or None; a function by its name."""
    if constraint is None:
        return None
    if type(constraint).__name__ in _CLASSES and isinstance(constraint, Constraint):
        return {"class_name": type(constraint).__name__, "config": constraint.get_config()}
    name = next((key for key, value in _CUSTOM.items() if value is constraint),
                getattr(constraint, "__name__", None))
    if not name:
        raise ValueError(f"constraint {constraint!r} cannot be saved: register it with "
                         "modularcnn.constraints.register")
    return {"class_name": "function", "config": {"name": name}}


def project(constraint, w):
    """Write ``constraint(w)`` into ``w`` (in place), checking its shape."""
    projected = np.asarray(constraint(w))
    if projected.shape != w.shape:
        raise ValueError(f"constraint {constraint!r} returned shape {projected.shape} for weights of "
                         f"shape {w.shape}")
    np.copyto(w, projected, casting="same_kind")
