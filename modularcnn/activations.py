"""Element-wise activation functions and their derivatives.

Each activation is a small object with ``forward(z) -> a`` and ``backward(da, z, a) -> dz``: the backward
pass receives both the input ``z`` and the output ``a`` of the forward pass, so each derivative uses
whichever is cheaper (ReLU's needs only the sign, sigmoid's only the output). Layers with an
``activation=`` argument and the :class:`~modularcnn.layers.Activation` layer share these objects.
"""

import numpy as np

from .mathutils import sigmoid, softmax


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
        return {}

    def __repr__(self):
        return f"{type(self).__name__}({self.get_config() or ''})"


class Linear(ActivationFunction):
    """The identity: ``a = z``."""

    name = "linear"


class ReLU(ActivationFunction):
    """``a = max(z, 0)``; derivative 1 where ``z > 0`` (0 at 0, as PyTorch and Keras)."""

    name = "relu"

    def forward(self, z):
        return np.maximum(z, 0)

    def forward_inplace(self, z):
        return np.maximum(z, 0, out=z)

    def backward(self, da, z, a):
        # Needs only the output's sign, so forward_inplace may overwrite z.
        return da * (a > 0)


class LeakyReLU(ActivationFunction):
    """``a = z`` for ``z > 0``, ``alpha * z`` otherwise."""

    name = "leakyrelu"

    def __init__(self, alpha=0.3):
        self.alpha = float(alpha)

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
        self.alpha = float(alpha)

    def forward(self, z):
        negative = z.dtype.type(self.alpha) * np.expm1(np.minimum(z, 0))
        return np.where(z > 0, z, negative)

    def backward(self, da, z, a):
        # For z <= 0, d/dz alpha*(e^z - 1) = alpha*e^z = a + alpha.
        return np.where(z > 0, da, da * (a + a.dtype.type(self.alpha)))

    def get_config(self):
        return {"alpha": self.alpha}


class Sigmoid(ActivationFunction):
    """``a = 1 / (1 + exp(-z))``, computed without overflow for large ``|z|``."""

    name = "sigmoid"

    def forward(self, z):
        return sigmoid(z)

    def backward(self, da, z, a):
        return da * a * (1 - a)


class Tanh(ActivationFunction):
    """``a = tanh(z)``."""

    name = "tanh"

    def forward(self, z):
        return np.tanh(z)

    def backward(self, da, z, a):
        return da * (1 - a * a)


class Softmax(ActivationFunction):
    """Softmax over the last axis; backward applies the full Jacobian ``diag(a) - a aᵀ``.

    Followed by a cross-entropy loss, the network skips this Jacobian and uses the fused gradient
    ``p - y`` instead (see :mod:`modularcnn.losses`); here it serves softmax used anywhere else.
    """

    name = "softmax"

    def forward(self, z):
        return softmax(z)

    def backward(self, da, z, a):
        return a * (da - np.sum(da * a, axis=-1, keepdims=True))


_ACTIVATIONS = {
    "linear": Linear,
    "relu": ReLU,
    "leakyrelu": LeakyReLU,
    "elu": ELU,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
    "softmax": Softmax,
}
_ALIASES = {"none": "linear", "identity": "linear", "leaky_relu": "leakyrelu", "logistic": "sigmoid"}
_TAKES_ALPHA = {"leakyrelu", "elu"}


def names():
    """The valid activation names."""
    return sorted(_ACTIVATIONS)


def get(identifier, alpha=None):
    """Return an activation object for a name (``"relu"``), ``None`` (linear) or an activation object.

    ``alpha`` sets the slope of ``leakyrelu`` and the scale of ``elu``; it is an error for the others.
    """
    if identifier is None:
        return Linear()
    if isinstance(identifier, ActivationFunction):
        return identifier
    if not isinstance(identifier, str):
        raise ValueError(
            f"activation must be a name or None, got {identifier!r}; valid names: {', '.join(names())}"
        )
    key = identifier.lower()
    key = _ALIASES.get(key, key)
    if key not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {identifier!r}; valid names: {', '.join(names())}")
    if key in _TAKES_ALPHA:
        return _ACTIVATIONS[key]() if alpha is None else _ACTIVATIONS[key](alpha)
    if alpha is not None:
        raise ValueError(f"activation {identifier!r} takes no alpha (only {sorted(_TAKES_ALPHA)} do)")
    return _ACTIVATIONS[key]()
