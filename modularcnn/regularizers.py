"""Penalties on weights and activations, added to the training loss: ``L1``, ``L2``, ``L1L2`` as in Keras 3.

A regularizer is an object ``r`` with ``r(x) -> float``, the penalty of an array ``x`` (any shape), and
``r.gradient(x) -> array``, its derivative ``d r(x) / dx`` (shape of ``x``, dtype of ``x``):

- ``L1(l1=0.01)``: ``l1 * sum(|x|)``, derivative ``l1 * sign(x)`` (0 at 0, as PyTorch and Keras);
- ``L2(l2=0.01)``: ``l2 * sum(x ** 2)``, derivative ``2 * l2 * x`` (note: no 1/2, as in Keras);
- ``L1L2(l1=0.0, l2=0.0)``: the sum of both.

Layers take them as ``kernel_regularizer=``, ``bias_regularizer=`` (and ``depthwise_regularizer=``,
``pointwise_regularizer=``, PReLU's ``alpha_regularizer=``): the penalty of the weights is added once to
every training step's loss and its gradient to the weights' gradients. ``activity_regularizer=``
penalises a layer's *output* in every forward pass of ``fit`` and ``evaluate``, divided by the batch
size as Keras 3 does (see :class:`ActivityTally`).

A regularizer is named by a string (``"l1"``, ``"l2"``: factor 0.01; ``"l1_l2"``: both factors 0.01, as
Keras documents it), an object (``L2(1e-4)``), one of this module's lowercase names (``l2(1e-4)``, the
classes themselves as in Keras 3), a config dict (ours or a Keras 3/Keras 2 one, e.g.
``{"module": "keras.regularizers", "class_name": "L2", "config": {"l2": 0.01}}``), a
:class:`Regularizer` subclass of your own (implement ``__call__`` and ``gradient``), or a pair
``(penalty, gradient)`` of functions on arrays (:class:`Custom`). A bare function is refused: its
gradient is never estimated by finite differences.
"""

import contextlib
import contextvars

import numpy as np

from . import validation
from .catalog import Configurable, split_config


class Regularizer(Configurable):
    """Base class: ``__call__(x) -> float`` and ``gradient(x) -> array``; no penalty by default."""

    def __call__(self, x):
        return 0.0

    def gradient(self, x):
        return np.zeros_like(x)

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash((type(self), tuple(sorted(self.get_config().items()))))


def _factor(value, name, owner, default):
    """A penalty factor: a finite number >= 0 (None means the default, as in Keras)."""
    return validation.non_negative_number(default if value is None else value, name, owner)


class L1(Regularizer):
    """``l1 * sum(|x|)``."""

    def __init__(self, l1=0.01):
        self.l1 = _factor(l1, "l1", "L1", 0.01)

    def __call__(self, x):
        return self.l1 * float(np.abs(x).sum(dtype=np.float64))

    def gradient(self, x):
        return (self.l1 * np.sign(x)).astype(x.dtype, copy=False)

    def get_config(self):
        return {"l1": self.l1}


class L2(Regularizer):
    """``l2 * sum(x ** 2)``."""

    def __init__(self, l2=0.01):
        self.l2 = _factor(l2, "l2", "L2", 0.01)

    def __call__(self, x):
        return self.l2 * float(np.square(x, dtype=np.float64).sum())

    def gradient(self, x):
        return (2.0 * self.l2 * x).astype(x.dtype, copy=False)

    def get_config(self):
        return {"l2": self.l2}


class L1L2(Regularizer):
    """``l1 * sum(|x|) + l2 * sum(x ** 2)``; both factors 0 by default, as Keras 3's class."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = _factor(l1, "l1", "L1L2", 0.0)
        self.l2 = _factor(l2, "l2", "L1L2", 0.0)

    def __call__(self, x):
        return L1(self.l1)(x) + L2(self.l2)(x)

    def gradient(self, x):
        return L1(self.l1).gradient(x) + L2(self.l2).gradient(x)

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


class Custom(Regularizer):
    """A regularizer given as a pair of functions: ``penalty(x) -> float`` and ``gradient(x) -> array``
    (``d penalty / dx``, the shape of ``x``). Check yours against finite differences (the tests'
    ``numerical_gradient`` does it in a few lines).

    Configs store only the ``name``: to save and load a model that uses one, :func:`register` the pair
    first and name it by that string (a registered pair is also found by identity).
    """

    def __init__(self, penalty, gradient, name=None):
        if not callable(penalty) or not callable(gradient):
            raise ValueError("a custom regularizer is a pair (penalty, gradient) of callables on "
                             f"arrays, got ({penalty!r}, {gradient!r})")
        self.penalty, self.derivative = penalty, gradient
        self.name = name or getattr(penalty, "__name__", "custom")

    def __call__(self, x):
        return float(self.penalty(x))

    def gradient(self, x):
        grad = np.asarray(self.derivative(x))
        if grad.shape != np.shape(x):
            raise ValueError(f"gradient of custom regularizer {self.name!r} returned shape "
                             f"{grad.shape} for an array of shape {np.shape(x)}")
        return grad.astype(x.dtype, copy=False)

    def get_config(self):
        return {"name": self.name}

    def __eq__(self, other):
        return (isinstance(other, Custom) and self.penalty is other.penalty
                and self.derivative is other.derivative)

    def __hash__(self):
        return hash((id(self.penalty), id(self.derivative)))


#: Keras 3's lowercase names are its classes: ``l2(1e-4)`` is ``L2(1e-4)``, ``l1_l2()`` has factors 0.
l1, l2, l1_l2 = L1, L2, L1L2

_CLASSES = {"L1": L1, "L2": L2, "L1L2": L1L2}
#: Names as strings (Keras's: ``"l1"``, ``"l2"``; ``"l1_l2"`` with both factors 0.01, as Keras's
#: documentation and Keras 2 have it, where Keras 3.15 refuses the string).
_BY_NAME = {"l1": L1, "l2": L2, "l1_l2": lambda: L1L2(0.01, 0.01), "l1l2": L1L2}
_CUSTOM = {}


def register(name, penalty, gradient=None):
    """Make a regularizer loadable by ``name`` from configs and model files: a ``(penalty, gradient)``
    pair, or (``gradient`` omitted) a :class:`Regularizer` subclass, rebuilt from its ``get_config()``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"regularizer name must be a non-empty string, got {name!r}")
    if name.lower() in _BY_NAME or name in _CLASSES or name == "Custom":
        raise ValueError(f"regularizer name {name!r} is taken by a built-in regularizer")
    if gradient is None:
        if not (isinstance(penalty, type) and issubclass(penalty, Regularizer)):
            raise ValueError(f"register({name!r}, ...): give a (penalty, gradient) pair or a "
                             f"Regularizer subclass, got {penalty!r}")
        _CUSTOM[name] = penalty
        return penalty
    _CUSTOM[name] = Custom(penalty, gradient, name=name)
    return _CUSTOM[name]


def names():
    """The valid regularizer names: built-in and registered."""
    return sorted(set(_BY_NAME) | set(_CLASSES) | set(_CUSTOM))


def _from_name(name, options=None):
    if name in _CUSTOM:
        found = _CUSTOM[name]
        return found(**(options or {})) if isinstance(found, type) else found
    if name in _CLASSES:
        return _CLASSES[name]()
    factory = _BY_NAME.get(name.lower())
    if factory is None:
        raise ValueError(f"unknown regularizer {name!r}; valid names: {', '.join(names())} (a custom "
                         "(penalty, gradient) pair must be registered with "
                         "modularcnn.regularizers.register before a model using it is loaded)")
    return factory()


def deserialize(config):
    """A regularizer from ``{"class_name": ..., "config": {...}}`` (ours, Keras 3's with ``module``, or
    Keras 2's); ``{"class_name": "Custom", "config": {"name": ...}}`` is a registered pair."""
    class_name, options = split_config(
        config, "regularizer", "register a (penalty, gradient) pair under its name instead")
    if class_name == "Custom":
        return _from_name(options.get("name", class_name))
    if class_name in _CUSTOM:
        return _from_name(class_name, options)
    # Keras 2 wrote L1L2 also for l1(...) and l2(...), and all of them under their lowercase names.
    cls = _CLASSES.get(class_name) or {"l1": L1, "l2": L2, "l1_l2": L1L2,
                                       "l1l2": L1L2}.get(class_name.lower())
    if cls is None:
        raise ValueError(f"unknown regularizer class {class_name!r}; supported: "
                         f"{', '.join(sorted(_CLASSES))} and registered names")
    try:
        return cls(**options)
    except TypeError as error:
        raise ValueError(f"invalid config for regularizer {class_name}: {error}") from None


def get(identifier, owner="regularizer"):
    """A regularizer (or None) from any of the forms the module docstring lists; ValueError otherwise,
    naming ``owner`` (e.g. ``"Dense: kernel_regularizer"``)."""
    try:
        return _get(identifier)
    except ValueError as error:
        raise ValueError(f"{owner}: {error}") from None


def _get(identifier):
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, str):
        return _from_name(identifier)
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, type) and issubclass(identifier, Regularizer):
        return identifier()
    if isinstance(identifier, tuple) and len(identifier) == 2:
        for registered in _CUSTOM.values():
            if isinstance(registered, Custom) and registered.penalty is identifier[0] and registered.derivative is identifier[1]:
                return registered
        return Custom(*identifier)
    if callable(identifier) and callable(getattr(identifier, "gradient", None)):
        return Custom(identifier, identifier.gradient, getattr(identifier, "name", None))
    if callable(identifier):
        raise ValueError(f"{identifier!r} is a bare function: give the pair (penalty, gradient), "
                         "where gradient(x) returns d penalty / dx, or a Regularizer subclass")
    raise ValueError(f"expected None, a name ({', '.join(names())}), a Regularizer, a config dict or "
                     f"a (penalty, gradient) pair, got {validation.describe_value(identifier)}")


def serialize(regularizer):
    """``{"class_name": ..., "config": {...}}`` for a config, or None."""
    if regularizer is None:
        return None
    if isinstance(regularizer, Custom):
        return {"class_name": "Custom", "config": {"name": regularizer.name}}
    # A subclass of your own is written by its class name: register the class to load it.
    return {"class_name": type(regularizer).__name__, "config": regularizer.get_config()}


# -- activity penalties: collected during a forward pass ----------------------------------------------

class ActivityTally:
    """The activity penalties of one forward pass, and the weight of their gradients.

    While a tally is open (:func:`tally_activity`), every layer with an ``activity_regularizer``
    adds ``r(output) / N`` (``N`` the rows it got, Keras 3's division by the batch size) to
    :attr:`total` and remembers ``weight / N`` as the factor of ``r.gradient(output)`` in its backward
    pass. ``weight`` is the factor of the whole loss: a data-parallel worker's share of the batch, so
    that the workers' penalties, like their losses, add up to the whole batch's. Outside a tally (a
    bare ``net.forward``) layers add nothing: the penalty belongs to the loss, not to the layer.
    """

    def __init__(self, weight=1.0):
        self.weight = float(weight)
        self.total = 0.0

    def add(self, regularizer, output):
        """Count ``output``'s penalty; returns the factor of its gradient."""
        rows = max(len(output), 1)
        self.total += regularizer(output) / rows
        return self.weight / rows


_TALLY = contextvars.ContextVar("modularcnn_activity_tally", default=None)


@contextlib.contextmanager
def tally_activity(weight=1.0):
    """``with tally_activity(weight) as tally: net.forward(x, ...)``: collect activity penalties."""
    tally = ActivityTally(weight)
    token = _TALLY.set(tally)
    try:
        yield tally
    finally:
        _TALLY.reset(token)


def current_tally():
    """The open :class:`ActivityTally` of this thread, or None."""
    return _TALLY.get()
