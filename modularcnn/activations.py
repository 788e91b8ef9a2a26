"""Element-wise activation functions and their derivatives.

Each activation is a small object with ``forward(z) -> a`` and ``backward(da, z, a) -> dz``: the backward
pass receives both the input ``z`` and the output ``a`` of the forward pass, so each derivative uses
whichever is cheaper (ReLU's needs only the sign, sigmoid's only the output). Layers with an
``activation=`` argument and the activation layers (:class:`~modularcnn.layers.Activation`,
:class:`~modularcnn.layers.ReLU`, ...) share these objects.

An activation is named by a string (``"gelu"``), by one of the Keras-style functions of this module
(``activation=modularcnn.activations.gelu``), by an object (``activations.ReLU(max_value=6)``), or by a
user-supplied pair ``(function, derivative)``: see :class:`Custom`.
"""

import math

import numpy as np

from . import validation
from .mathutils import sigmoid as _logistic


class ActivationFunction:
    """Base class; ``name`` is how the activation is written in configs and summaries."""

    name = "linear"

    def forward(self, z):
        return z

    def forward_inplace(self, z):
        """``forward(z)``, allowed to overwrite ``z`` (a new array the caller owns) to save a copy.

        Layers keep ``z`` for the backward pass only when the result is not ``z`` itself.
        """
        return self.forward(z)

    def backward(self, da, z, a):
        return da

    def get_config(self):
        """The constructor's arguments that differ from their defaults (empty for most)."""
        return {}

    def __call__(self, z):
        return self.forward(np.asarray(z))

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash((type(self), tuple(sorted(self.get_config().items()))))

    def __repr__(self):
        return f"{type(self).__name__}({self.get_config() or ''})"


def _const(array, value):
    """``value`` in ``array``'s dtype, so float32 stays float32."""
    return array.dtype.type(value)


class Linear(ActivationFunction):
    """The identity: ``a = z``."""

    name = "linear"


class ReLU(ActivationFunction):
    """Keras's rectifier: ``max_value`` for ``z >= max_value``, ``z`` for ``threshold < z < max_value``,
    ``negative_slope * (z - threshold)`` for ``z <= threshold``.

    As in Keras 3's implementation (``relu(x, threshold=5)`` maps 5 to 0), a value equal to the threshold
    is damped. The defaults give ``max(z, 0)``; the derivative at a kink is the one of the lower piece
    (0 at 0, as PyTorch and Keras).
    """

    name = "relu"

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0):
        max_value = validation.non_negative_number(max_value, "max_value", "ReLU", allow_none=True)
        negative_slope = validation.non_negative_number(negative_slope, "negative_slope", "ReLU")
        threshold = validation.non_negative_number(threshold, "threshold", "ReLU")
        if max_value is not None and max_value < threshold:
            raise ValueError(f"ReLU: max_value {max_value} is below threshold {threshold}")
        self.max_value, self.negative_slope, self.threshold = max_value, negative_slope, threshold

    @property
    def plain(self):
        """True for ``max(z, 0)``, which has an in-place path."""
        return self.max_value is None and self.negative_slope == 0 and self.threshold == 0

    def forward(self, z):
        if self.plain:
            return np.maximum(z, 0)
        t = _const(z, self.threshold)
        below = _const(z, self.negative_slope) * (z - t) if self.negative_slope else _const(z, 0.0)
        a = np.where(z > t, z, below)
        if self.max_value is not None:
            np.minimum(a, _const(z, self.max_value), out=a)
        return a

    def forward_inplace(self, z):
        if self.plain:
            return np.maximum(z, 0, out=z)
        return self.forward(z)

    def backward(self, da, z, a):
        if self.plain:
            # Needs only the output's sign, so forward_inplace may overwrite z.
            return da * (a > 0)
        inside = z > _const(z, self.threshold)
        if self.max_value is not None:
            inside &= z < _const(z, self.max_value)
        slope = np.where(inside, _const(da, 1.0), _const(da, 0.0))
        if self.negative_slope:
            slope[z <= _const(z, self.threshold)] = self.negative_slope
        return da * slope

    def get_config(self):
        defaults = {"max_value": None, "negative_slope": 0.0, "threshold": 0.0}
        return {key: getattr(self, key) for key, default in defaults.items()
                if getattr(self, key) != default}


class ReLU6(ReLU):
    """``min(max(z, 0), 6)``."""

    name = "relu6"

    def __init__(self):
        super().__init__(max_value=6.0)

    def get_config(self):
        return {}


class LeakyReLU(ActivationFunction):
    """``a = z`` for ``z > 0``, ``alpha * z`` otherwise (Keras calls ``alpha`` ``negative_slope``)."""

    name = "leakyrelu"

    def __init__(self, alpha=0.3):
        self.alpha = validation.real(alpha, "alpha", "LeakyReLU")

    def forward(self, z):
        return np.where(z > 0, z, z * z.dtype.type(self.alpha))

    def backward(self, da, z, a):
        return np.where(z > 0, da, da * da.dtype.type(self.alpha))

    def get_config(self):
        return {"alpha": self.alpha}


class ELU(ActivationFunction):
    """``a = z`` for ``z > 0``, ``alpha * (exp(z) - 1)`` otherwise."""

    name = "elu"

    def __init__(self, alpha=1.0):
        self.alpha = validation.real(alpha, "alpha", "ELU")

    def forward(self, z):
        negative = z.dtype.type(self.alpha) * np.expm1(np.minimum(z, 0))
        return np.where(z > 0, z, negative)

    def backward(self, da, z, a):
        # For z <= 0, d/dz alpha*(e^z - 1) = alpha*e^z = a + alpha.
        return np.where(z > 0, da, da * (a + a.dtype.type(self.alpha)))

    def get_config(self):
        return {"alpha": self.alpha}


class SELU(ActivationFunction):
    """Scaled ELU: ``scale * elu(z, alpha)`` with the self-normalising constants of Klambauer et al.
    (``alpha = 1.67326324...``, ``scale = 1.05070098...``, the values Keras and PyTorch use)."""

    name = "selu"
    ALPHA = 1.6732632423543772848170429916717
    SCALE = 1.0507009873554804934193349852946

    def forward(self, z):
        negative = _const(z, self.ALPHA) * np.expm1(np.minimum(z, 0))
        return _const(z, self.SCALE) * np.where(z > 0, z, negative)

    def backward(self, da, z, a):
        # For z <= 0, d/dz scale*alpha*(e^z - 1) = a + scale*alpha.
        slope = np.where(z > 0, _const(a, self.SCALE), a + _const(a, self.SCALE * self.ALPHA))
        return da * slope


class GELU(ActivationFunction):
    """Gaussian error linear unit ``z * Phi(z)``; ``approximate=True`` uses the tanh formula.

    The exact form (Keras 3's default) needs ``erf``, which NumPy lacks: it is evaluated with the
    standard library's ``math.erf`` element by element (exact, but about 50 ns per value); the tanh
    approximation is plain vectorised NumPy.
    """

    name = "gelu"
    _erf = np.frompyfunc(math.erf, 1, 1)
    _C = math.sqrt(2.0 / math.pi)

    def __init__(self, approximate=False):
        if not isinstance(approximate, (bool, np.bool_)):
            raise ValueError(f"gelu: approximate must be True or False, got {approximate!r}")
        self.approximate = bool(approximate)

    def _tanh_inner(self, z):
        return np.tanh(_const(z, self._C) * (z + _const(z, 0.044715) * z ** 3))

    def forward(self, z):
        if self.approximate:
            return _const(z, 0.5) * z * (1 + self._tanh_inner(z))
        cdf = 0.5 * (1.0 + self._erf(z / math.sqrt(2.0)).astype(np.float64))
        return (z * cdf).astype(z.dtype, copy=False)

    def backward(self, da, z, a):
        if self.approximate:
            t = self._tanh_inner(z)
            inner_slope = _const(z, self._C) * (1 + _const(z, 3 * 0.044715) * z * z)
            slope = _const(z, 0.5) * (1 + t) + _const(z, 0.5) * z * (1 - t * t) * inner_slope
            return da * slope
        cdf = 0.5 * (1.0 + self._erf(z / math.sqrt(2.0)).astype(np.float64))
        pdf = np.exp(-0.5 * np.square(z, dtype=np.float64)) / math.sqrt(2 * math.pi)
        return da * (cdf + z * pdf).astype(da.dtype, copy=False)

    def get_config(self):
        return {"approximate": True} if self.approximate else {}


class SiLU(ActivationFunction):
    """``z * sigmoid(z)`` (Keras's ``silu``, also called ``swish``)."""

    name = "silu"

    def forward(self, z):
        return z * _logistic(z)

    def backward(self, da, z, a):
        s = _logistic(z)
        return da * (s * (1 + z * (1 - s)))


class Softplus(ActivationFunction):
    """``log(1 + exp(z))``, without overflow; its derivative is ``sigmoid(z)``."""

    name = "softplus"

    def forward(self, z):
        return np.logaddexp(_const(z, 0.0), z)

    def backward(self, da, z, a):
        return da * _logistic(z)


class Softsign(ActivationFunction):
    """``z / (1 + |z|)``."""

    name = "softsign"

    def forward(self, z):
        return z / (1 + np.abs(z))

    def backward(self, da, z, a):
        return da / np.square(1 + np.abs(z))


class Exponential(ActivationFunction):
    """``exp(z)``."""

    name = "exponential"

    def forward(self, z):
        return np.exp(z)

    def backward(self, da, z, a):
        return da * a


class HardSigmoid(ActivationFunction):
    """Keras 3's ``hard_sigmoid``: ``relu6(z + 3) / 6``, i.e. 0 below -3, 1 above 3, linear between."""

    name = "hard_sigmoid"

    def forward(self, z):
        return np.clip(z / _const(z, 6.0) + _const(z, 0.5), 0, 1)

    def backward(self, da, z, a):
        return da * ((z > -3) & (z < 3)) / _const(da, 6.0)


class HardSiLU(ActivationFunction):
    """Keras 3's ``hard_silu`` (``hard_swish``): ``z * hard_sigmoid(z)``."""

    name = "hard_silu"

    def forward(self, z):
        return z * np.clip(z / _const(z, 6.0) + _const(z, 0.5), 0, 1)

    def backward(self, da, z, a):
        slope = np.where(z >= 3, _const(z, 1.0), np.where(z > -3, z / _const(z, 3.0) + _const(z, 0.5),
                                                           _const(z, 0.0)))
        return da * slope


class Sigmoid(ActivationFunction):
    """``a = 1 / (1 + exp(-z))``, computed without overflow for large ``|z|``."""

    name = "sigmoid"

    def forward(self, z):
        return _logistic(z)

    def backward(self, da, z, a):
        return da * a * (1 - a)


class Tanh(ActivationFunction):
    """``a = tanh(z)``."""

    name = "tanh"

    def forward(self, z):
        return np.tanh(z)

    def forward_inplace(self, z):
        # The derivative needs only the output, so z may be overwritten (one array less per layer).
        return np.tanh(z, out=z)

    def backward(self, da, z, a):
        return da * (1 - a * a)


class Softmax(ActivationFunction):
    """Softmax along ``axis`` (default the last); backward applies the full Jacobian ``diag(a) - a aᵀ``.

    ``axis`` counts the batch axis, as in Keras (``-1`` is the last). Followed by a cross-entropy loss,
    the network skips this Jacobian and uses the fused gradient ``p - y`` instead (see
    :mod:`modularcnn.losses`), but only for the last axis; here it serves softmax used anywhere else.
    """

    name = "softmax"

    def __init__(self, axis=-1):
        self.axis = validation.axis(axis, "axis", "softmax")

    def forward(self, z):
        shifted = z - np.max(z, axis=self.axis, keepdims=True)
        e = np.exp(shifted)
        e /= np.sum(e, axis=self.axis, keepdims=True)
        return e

    def backward(self, da, z, a):
        return a * (da - np.sum(da * a, axis=self.axis, keepdims=True))

    def get_config(self):
        return {} if self.axis == -1 else {"axis": self.axis}


class Custom(ActivationFunction):
    """An activation given as a pair of element-wise functions: ``forward(z)`` and ``derivative(z)``.

    ``derivative(z)`` returns ``da/dz`` at every element (same shape as ``z``); the backward pass is
    ``da * derivative(z)``. Both take and return NumPy arrays. No derivative is ever estimated by finite
    differences: a pair without one is refused. Check yours with :func:`modularcnn.gradcheck` on an
    ``Activation`` layer.

    Configs store only the ``name``. To save and load a model that uses one, register the pair first,
    ``modularcnn.activations.register("my_act", forward, derivative)``, and name it by that string (or
    pass the pair: a registered pair is found by identity).
    """

    def __init__(self, forward, derivative, name=None):
        if not callable(forward) or not callable(derivative):
            raise ValueError(
                "a custom activation is a pair (function, derivative) of callables on arrays, got "
                f"({forward!r}, {derivative!r})"
            )
        self.function, self.derivative = forward, derivative
        self.name = name or getattr(forward, "__name__", "custom")

    def forward(self, z):
        a = np.asarray(self.function(z))
        if a.shape != z.shape:
            raise ValueError(f"custom activation {self.name!r} returned shape {a.shape} for input "
                             f"{z.shape}; it must be element-wise")
        return a.astype(z.dtype, copy=False)

    def backward(self, da, z, a):
        slope = np.asarray(self.derivative(z))
        if slope.shape != z.shape:
            raise ValueError(f"derivative of custom activation {self.name!r} returned shape "
                             f"{slope.shape} for input {z.shape}; it must be element-wise")
        return da * slope.astype(da.dtype, copy=False)

    def __eq__(self, other):
        return (isinstance(other, Custom) and self.function is other.function
                and self.derivative is other.derivative)

    def __hash__(self):
        return hash((id(self.function), id(self.derivative)))


_ACTIVATIONS = {
    cls.name: cls
    for cls in (Linear, ReLU, ReLU6, LeakyReLU, ELU, SELU, GELU, SiLU, Softplus, Softsign, Exponential,
                HardSigmoid, HardSiLU, Sigmoid, Tanh, Softmax)
}
_ALIASES = {"none": "linear", "identity": "linear", "leaky_relu": "leakyrelu", "logistic": "sigmoid",
            "swish": "silu", "hard_swish": "hard_silu"}
_TAKES_ALPHA = {"leakyrelu", "elu"}
_CUSTOM = {}


def register(name, forward, derivative):
    """Make a ``(forward, derivative)`` pair available by ``name`` (in configs and model files).

    Built-in names cannot be taken. Registering the same pair again under the same name is allowed.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"activation name must be a non-empty string, got {name!r}")
    key = name.lower()
    if key in _ACTIVATIONS or key in _ALIASES:
        raise ValueError(f"activation name {name!r} is taken by a built-in activation")
    _CUSTOM[key] = Custom(forward, derivative, name=key)
    return _CUSTOM[key]


def names(include_custom=True):
    """The valid activation names: built-in and (unless ``include_custom`` is False) registered."""
    return sorted(set(_ACTIVATIONS) | (set(_CUSTOM) if include_custom else set()))


def serialize(activation):
    """An activation as a config value: its name, or ``{"name": ..., **config}`` when it has options."""
    config = activation.get_config()
    if isinstance(activation, (LeakyReLU, ELU)) or not config:
        return activation.name
    return {"name": activation.name, **config}


def _from_name(identifier, alpha=None, options=None):
    key = identifier.lower()
    key = _ALIASES.get(key, key)
    if key in _CUSTOM:
        if alpha is not None or options:
            raise ValueError(f"custom activation {identifier!r} takes no options")
        return _CUSTOM[key]
    if key not in _ACTIVATIONS:
        raise ValueError(
            f"unknown activation {identifier!r}; valid names: {', '.join(names())} (a custom "
            "(function, derivative) pair must be registered with modularcnn.activations.register "
            "before a model using it is loaded)"
        )
    options = dict(options or {})
    if alpha is not None:
        if key not in _TAKES_ALPHA:
            raise ValueError(f"activation {identifier!r} takes no alpha (only {sorted(_TAKES_ALPHA)} do)")
        options["alpha"] = alpha
    try:
        return _ACTIVATIONS[key](**options)
    except TypeError:
        raise ValueError(f"activation {identifier!r} does not take options {sorted(options)}") from None


def get(identifier, alpha=None):
    """Return an activation object.

    ``identifier`` may be a name (``"relu"``), ``None`` (linear), an activation object, one of this
    module's functions (``activations.gelu``), a ``{"name": ..., **options}`` config, or a
    ``(function, derivative)`` pair (:class:`Custom`). ``alpha`` sets the slope of ``leakyrelu`` and the
    scale of ``elu``; it is an error for the others.
    """
    if identifier is None:
        return Linear() if alpha is None else _from_name("linear", alpha)
    if isinstance(identifier, ActivationFunction):
        if alpha is not None:
            raise ValueError(f"give alpha to the activation object {identifier!r}, not beside it")
        return identifier
    if isinstance(identifier, str):
        return _from_name(identifier, alpha)
    if isinstance(identifier, dict):
        options = dict(identifier)
        name = options.pop("name", None)
        if not isinstance(name, str):
            raise ValueError(f"an activation config needs a 'name', got {identifier!r}")
        return _from_name(name, alpha, options)
    if callable(identifier) and identifier in _FUNCTIONS:
        if alpha is not None:
            raise ValueError(f"give alpha as an activation object's argument, not beside {identifier!r}")
        return _FUNCTIONS[identifier]()
    if isinstance(identifier, tuple) and len(identifier) == 2:
        for registered in _CUSTOM.values():
            if registered.function is identifier[0] and registered.derivative is identifier[1]:
                return registered
        return Custom(*identifier)
    if callable(identifier):
        raise ValueError(
            f"activation {identifier!r} is a bare callable: give the pair (function, derivative), "
            "where derivative(z) returns da/dz element-wise, or one of "
            "modularcnn.activations' own functions"
        )
    raise ValueError(
        f"activation must be a name, None, an activation object or a (function, derivative) pair, "
        f"got {identifier!r}; valid names: {', '.join(names())}"
    )


# -- Keras-style functions: ``keras.activations.relu(x)``, usable as ``activation=`` too -----------

def relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    """Keras's ``relu(x, negative_slope, max_value, threshold)`` on an array."""
    return ReLU(max_value, negative_slope, threshold)(x)


def relu6(x):
    return ReLU6()(x)


def leaky_relu(x, negative_slope=0.2):
    """Keras's ``leaky_relu`` (its function default slope is 0.2; the layer's is 0.3)."""
    return LeakyReLU(negative_slope)(x)


def elu(x, alpha=1.0):
    return ELU(alpha)(x)


def selu(x):
    return SELU()(x)


def gelu(x, approximate=False):
    return GELU(approximate)(x)


def silu(x):
    return SiLU()(x)


swish = silu


def softplus(x):
    return Softplus()(x)


def softsign(x):
    return Softsign()(x)


def exponential(x):
    return Exponential()(x)


def hard_sigmoid(x):
    return HardSigmoid()(x)


def hard_silu(x):
    return HardSiLU()(x)


hard_swish = hard_silu


def sigmoid(x):
    return Sigmoid()(x)


def tanh(x):
    return Tanh()(x)


def softmax(x, axis=-1):
    return Softmax(axis)(x)


def linear(x):
    return np.asarray(x)


#: Each function, passed as ``activation=``, stands for the activation object it computes with its
#: default arguments (``leaky_relu``: Keras's function default slope 0.2).
_FUNCTIONS = {relu: ReLU, relu6: ReLU6, leaky_relu: lambda: LeakyReLU(0.2), elu: ELU, selu: SELU,
              gelu: GELU, silu: SiLU, softplus: Softplus, softsign: Softsign,
              exponential: Exponential, hard_sigmoid: HardSigmoid, hard_silu: HardSiLU,
              sigmoid: Sigmoid, tanh: Tanh, softmax: Softmax, linear: Linear}
