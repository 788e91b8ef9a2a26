"""Weight initialisers: ``f(shape, rng, dtype) -> array``.

Any callable with that signature works wherever an initialiser is expected; the classes here are the
usual ones, by name as in Keras (``"he_normal"``, ``"glorot_uniform"``, …). ``rng`` is a
``numpy.random.Generator``: the network hands its own, seeded one to every layer, so the same seed gives
the same weights.

Fans follow Keras: a dense kernel ``(in, out)`` has ``fan_in = in``; a convolution kernel
``(*K, in, out)`` has ``fan_in = prod(K) * in`` and ``fan_out = prod(K) * out``.
"""

import contextlib
import contextvars
import math
import random

import numpy as np

from . import validation
from .catalog import Configurable


def compute_fans(shape):
    """``(fan_in, fan_out)`` of a weight array of the given shape."""
    shape = tuple(shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive_field = math.prod(shape[:-2])
    return shape[-2] * receptive_field, shape[-1] * receptive_field


class Initializer(Configurable):
    """Base class: subclasses implement ``__call__(shape, rng, dtype)``."""

    def __call__(self, shape, rng, dtype=np.float32):
        raise NotImplementedError


class Zeros(Initializer):
    """All zeros."""

    def __call__(self, shape, rng=None, dtype=np.float32):
        return np.zeros(shape, dtype=dtype)


class Ones(Initializer):
    """All ones."""

    def __call__(self, shape, rng=None, dtype=np.float32):
        return np.ones(shape, dtype=dtype)


class Constant(Initializer):
    """Every element equal to ``value``."""

    def __init__(self, value=0.0):
        self.value = validation.real(value, "value", "Constant")

    def __call__(self, shape, rng=None, dtype=np.float32):
        return np.full(shape, self.value, dtype=dtype)

    def get_config(self):
        return {"value": self.value}


class RandomNormal(Initializer):
    """Normal distribution with the given ``mean`` and ``stddev``."""

    def __init__(self, stddev=0.05, mean=0.0):
        self.stddev = validation.non_negative_number(stddev, "stddev", "RandomNormal")
        self.mean = validation.real(mean, "mean", "RandomNormal")

    def __call__(self, shape, rng, dtype=np.float32):
        return draw_in_pieces(shape, dtype, lambda n: rng.normal(self.mean, self.stddev, size=n))

    def get_config(self):
        return {"stddev": self.stddev, "mean": self.mean}


class RandomUniform(Initializer):
    """Uniform on ``[-limit, limit]``."""

    def __init__(self, limit=0.05):
        # The draw's range, 2 * limit, must be a finite float.
        self.limit = validation.real(limit, "limit", "RandomUniform", minimum=0,
                                     maximum=np.finfo(np.float64).max / 2)

    def __call__(self, shape, rng, dtype=np.float32):
        return draw_in_pieces(shape, dtype, lambda n: rng.uniform(-self.limit, self.limit, size=n))

    def get_config(self):
        return {"limit": self.limit}


#: Values drawn at a time (8 MiB of float64). NumPy's Generator draws each value in turn, so
#: ``rng.normal`` / ``rng.uniform`` / ``rng.standard_normal`` give the same stream in pieces as in one
#: call (tests/test_initializers.py checks it): the weights are those of a one-shot float64 draw, bit
#: for bit, while a float32 layer needs its own size plus one piece instead of three times its size.
DRAW_PIECE = 1 << 20


def draw_in_pieces(shape, dtype, draw):
    """``draw(n)`` (``n`` float64 values of a stream) called for consecutive pieces of at most
    :data:`DRAW_PIECE` values, written in order into a new ``dtype`` array of ``shape``; the same
    values as ``draw(prod(shape)).reshape(shape).astype(dtype)`` without the float64 whole."""
    out = np.empty(shape, dtype=dtype)
    flat = out.reshape(-1)  # a view: a new array is contiguous
    for start in range(0, flat.size, DRAW_PIECE):
        flat[start:start + DRAW_PIECE] = draw(min(DRAW_PIECE, flat.size - start))
    return out


def truncated_normal(shape, stddev, rng, dtype=np.float64):
    """Normal(0, stddev) redrawn until every value lies within two standard deviations.

    The stream of the one-shot algorithm (draw every value; then, while any is outside [-2, 2],
    redraw the outside ones in index order), so seeded weights stay what they were, but in pieces:
    float64 values a :data:`DRAW_PIECE` at a time, multiplied by ``stddev`` and cast into the
    ``dtype`` result, keeping only the flat indices of the values to redraw (about 4.6% of them,
    8 bytes each, fewer every round). A redrawn value can only replace one that was outside, so
    the indices still outside after a round are a subset of the last round's, in the same order.

    Returns
    -------
    array of ``shape`` and ``dtype``
    """
    out = np.empty(shape, dtype=dtype)
    flat = out.reshape(-1)
    pending = []  # flat indices outside [-2, 2], ascending
    for start in range(0, flat.size, DRAW_PIECE):
        values = rng.standard_normal(size=min(DRAW_PIECE, flat.size - start))
        pending.append(start + np.flatnonzero((values > 2) | (values < -2)))
        values *= stddev
        flat[start:start + values.size] = values
    pending = np.concatenate(pending) if pending else np.empty(0, np.intp)
    while pending.size:
        still = []
        for start in range(0, pending.size, DRAW_PIECE):
            where = pending[start:start + DRAW_PIECE]
            values = rng.standard_normal(size=where.size)
            still.append(where[(values > 2) | (values < -2)])
            values *= stddev
            flat[where] = values
        pending = np.concatenate(still)
    return out


class VarianceScaling(Initializer):
    """Variance ``scale / n`` with ``n`` = fan_in, fan_out or their mean (the family of He/Glorot/LeCun).

    ``distribution="truncated_normal"`` draws within two standard deviations and corrects the spread
    for the truncation (as Keras does); ``"uniform"`` draws from ``[-sqrt(3 * var), sqrt(3 * var)]``.
    """

    # Standard deviation of a unit normal truncated to [-2, 2].
    TRUNCATION_CORRECTION = 0.87962566103423978

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal"):
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ValueError(f"mode must be 'fan_in', 'fan_out' or 'fan_avg', got {mode!r}")
        if distribution not in ("truncated_normal", "uniform"):
            raise ValueError(f"distribution must be 'truncated_normal' or 'uniform', got {distribution!r}")
        self.scale = validation.positive_number(scale, "scale", "VarianceScaling")
        self.mode = mode
        self.distribution = distribution

    def __call__(self, shape, rng, dtype=np.float32):
        fan_in, fan_out = compute_fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        variance = self.scale / max(1.0, n)
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * variance)
            return draw_in_pieces(shape, dtype, lambda n: rng.uniform(-limit, limit, size=n))
        return truncated_normal(shape, math.sqrt(variance) / self.TRUNCATION_CORRECTION, rng, dtype)

    def get_config(self):
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution}


def _variance_scaling_family(class_name, scale, mode, distribution, doc):
    """Make a named member of the VarianceScaling family whose config is empty, like Keras's."""

    def __init__(self):
        VarianceScaling.__init__(self, scale, mode, distribution)

    def get_config(self):
        return {}

    return type(class_name, (VarianceScaling,), {"__init__": __init__, "get_config": get_config,
                                                 "__doc__": doc})


HeNormal = _variance_scaling_family("HeNormal", 2.0, "fan_in", "truncated_normal",
                                    "Truncated normal with variance 2 / fan_in (for ReLU layers).")
HeUniform = _variance_scaling_family("HeUniform", 2.0, "fan_in", "uniform",
                                     "Uniform with variance 2 / fan_in (for ReLU layers).")
GlorotNormal = _variance_scaling_family("GlorotNormal", 1.0, "fan_avg", "truncated_normal",
                                        "Truncated normal with variance 2 / (fan_in + fan_out).")
GlorotUniform = _variance_scaling_family("GlorotUniform", 1.0, "fan_avg", "uniform",
                                         "Uniform on ±sqrt(6 / (fan_in + fan_out)); Keras's default.")
LecunNormal = _variance_scaling_family("LecunNormal", 1.0, "fan_in", "truncated_normal",
                                       "Truncated normal with variance 1 / fan_in.")
LecunUniform = _variance_scaling_family("LecunUniform", 1.0, "fan_in", "uniform",
                                        "Uniform with variance 1 / fan_in.")

_BY_NAME = {
    "zeros": Zeros, "ones": Ones, "constant": Constant,
    "normal": RandomNormal, "random_normal": RandomNormal,
    "uniform": RandomUniform, "random_uniform": RandomUniform,
    "variance_scaling": VarianceScaling,
    "he_normal": HeNormal, "he_uniform": HeUniform,
    "glorot_normal": GlorotNormal, "glorot_uniform": GlorotUniform,
    "xavier_normal": GlorotNormal, "xavier_uniform": GlorotUniform,
    "lecun_normal": LecunNormal, "lecun_uniform": LecunUniform,
}
_CLASSES = {cls.__name__: cls for cls in _BY_NAME.values()}


def names():
    """The valid initialiser names."""
    return sorted(_BY_NAME)


def get(identifier):
    """An initialiser from a name, an :class:`Initializer`, any callable, or a serialised dict."""
    if isinstance(identifier, str):
        key = identifier.lower()
        if key not in _BY_NAME:
            raise ValueError(f"unknown initializer {identifier!r}; valid names: {', '.join(names())}")
        return _BY_NAME[key]()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if callable(identifier):
        return identifier
    raise ValueError(
        f"initializer must be a name, an Initializer or a callable f(shape, rng, dtype), got {identifier!r}"
    )


def serialize(initializer):
    """``{"class_name": ..., "config": ...}`` for an :class:`Initializer`; a plain function by name."""
    if isinstance(initializer, Initializer):
        return {"class_name": type(initializer).__name__, "config": initializer.get_config()}
    return {"class_name": "function", "config": {"name": getattr(initializer, "__name__", repr(initializer))}}


def deserialize(config):
    """Inverse of :func:`serialize` for the built-in classes."""
    class_name = config.get("class_name") if isinstance(config, dict) else None
    if class_name not in _CLASSES:
        raise ValueError(
            f"unknown initializer class {class_name!r}; valid classes: {', '.join(sorted(_CLASSES))}"
        )
    return _CLASSES[class_name].from_config(dict(config.get("config") or {}))


# -- the seed of layers that belong to no network ---------------------------------------------------

_GENERATOR = None


def set_random_seed(seed):
    """Seed the initial weights of layers outside any ``Net`` (and ``random`` and ``np.random``).

    A ``Net`` seeds its layers itself (``Net(seed=...)``). Layers called on ``Input(...)`` tensors to
    build a graph draw their initial weights when they are first called, before any ``Model`` exists;
    without a seed each draws from a fresh, unseeded generator. After ``set_random_seed(seed)`` they all
    draw from one generator seeded with ``seed``, so the same script builds the same weights, as
    ``keras.utils.set_random_seed`` does. Also exported as ``modularcnn.utils.set_random_seed``.
    """
    global _GENERATOR
    seed = validation.seed(seed, "seed", "set_random_seed")
    if seed is None:
        raise ValueError("set_random_seed: seed must be a non-negative int, got None")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    _GENERATOR = np.random.default_rng(seed)


def layer_generator():
    """The generator a layer outside any network draws from: the seeded one, or a fresh one."""
    return _GENERATOR if _GENERATOR is not None else np.random.default_rng()


# -- building without drawing ---------------------------------------------------------------------

_DEFERRED = contextvars.ContextVar("modularcnn_initial_weights_deferred", default=False)


@contextlib.contextmanager
def deferred_drawing():
    """Within this block layers create zero-memory placeholders instead of drawing initial weights.

    Used by ``load_model``: the file's arrays replace the initial weights anyway, so the network is
    built without allocating or drawing them, its shapes are compared with the file's declared shapes,
    and only then is anything read (a config declaring ``Dense(2_000_000)`` costs nothing).
    """
    token = _DEFERRED.set(True)
    try:
        yield
    finally:
        _DEFERRED.reset(token)


def drawing_deferred():
    """True inside :func:`deferred_drawing`."""
    return _DEFERRED.get()
