"""Check a layer's (or a network's) backward pass against centred finite differences.

Use it on your own layers::

    from modularcnn import gradcheck
    errors = gradcheck(MyLayer(...), input_shape=(7, 5, 3))   # raises if any error > 1e-6

The check works in float64. It feeds a random batch through ``forward(x, training=True)``, takes the
scalar ``L = sum(r * y)`` with a fixed random ``r``, and compares ``backward(r)`` — the input gradient and
every trainable parameter's gradient — with ``(L(v + eps) - L(v - eps)) / (2 eps)`` for every element
``v``. Random layers (dropout) are reseeded before each forward pass so they draw the same mask.
"""

import numpy as np


class GradientCheckError(AssertionError):
    """A backward pass disagrees with finite differences."""


def relative_error(analytic, numeric):
    """``||a - n|| / (||a|| + ||n||)``: 0 for a perfect match, robust to entries that are near zero."""
    analytic = np.asarray(analytic, dtype=np.float64)
    numeric = np.asarray(numeric, dtype=np.float64)
    scale = np.linalg.norm(analytic) + np.linalg.norm(numeric)
    if scale == 0:
        return 0.0
    return float(np.linalg.norm(analytic - numeric) / scale)


def numerical_gradient(f, array, eps=1e-6):
    """Centred finite differences of the scalar function ``f()`` with respect to ``array``, in place."""
    grad = np.zeros_like(array, dtype=np.float64)
    flat, flat_grad = array.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        saved = flat[i]
        flat[i] = saved + eps
        plus = f()
        flat[i] = saved - eps
        minus = f()
        flat[i] = saved
        flat_grad[i] = (plus - minus) / (2 * eps)
    return grad


def _layers_of(model):
    return list(model.layers) if hasattr(model, "layers") else [model]


def _prepare_float64(model, input_shape, seed):
    """Build (or rebuild) ``model`` in float64; returns the per-sample input shape."""
    if hasattr(model, "layers"):  # a Net
        if model.dtype != np.float64:
            raise ValueError("gradcheck needs a Net built with dtype='float64'")
        return model.input_shape
    layer = model
    if not layer.built or layer.dtype != np.float64:
        shape = input_shape or layer.input_shape
        if shape is None:
            raise ValueError("gradcheck: give input_shape (per sample) for an unbuilt layer")
        layer.dtype = np.dtype(np.float64)
        layer.rng = np.random.default_rng(seed)
        layer.params = {}
        layer.build(tuple(shape))
    return layer.input_shape


def gradcheck(model, input_shape=None, batch_size=2, x=None, seed=0, eps=1e-6, tolerance=1e-6,
              training=True, check_input=True, raise_on_failure=True):
    """Compare ``model.backward`` with finite differences; returns ``{name: relative error}``.

    Parameters
    ----------
    model : Layer or Net
        A layer (built here in float64 if it is not already) or a ``Net(dtype="float64")``.
    input_shape : tuple, optional
        Per-sample input shape for an unbuilt layer.
    batch_size : int
        Rows of the random input batch (use 1 to check the single-sample path).
    x : array, optional
        The input batch to use instead of a random one, shape ``(N, *input_shape)``.
    tolerance : float
        Largest accepted relative error; beyond it :class:`GradientCheckError` is raised
        (unless ``raise_on_failure`` is false).

    Returns
    -------
    dict
        ``"input"`` and each trainable parameter (``"kernel"``, or ``"layer/kernel"`` for a Net) mapped
        to its relative error.
    """
    shape = _prepare_float64(model, input_shape, seed)
    rng = np.random.default_rng(seed)
    if x is None:
        x = rng.standard_normal((batch_size,) + tuple(shape))
    x = np.array(x, dtype=np.float64)
    layers = _layers_of(model)

    def run_forward():
        for i, layer in enumerate(layers):  # same dropout masks on every call
            layer.rng = np.random.default_rng(seed + 1 + i)
        return model.forward(x, training=training)

    y = run_forward()
    r = rng.standard_normal(y.shape)

    def loss():
        return float(np.sum(run_forward() * r))

    run_forward()
    dx = model.backward(r.copy())
    analytic = {}
    if check_input:
        analytic["input"] = np.array(dx)
    prefix = len(layers) > 1 or hasattr(model, "layers")
    for layer in layers:
        for key in layer.trainable_params:
            analytic[f"{layer.name}/{key}" if prefix else key] = np.array(layer.grads[key])

    errors = {}
    if check_input:
        errors["input"] = relative_error(analytic["input"], numerical_gradient(loss, x, eps))
    for layer in layers:
        for key, value in layer.trainable_params.items():
            name = f"{layer.name}/{key}" if prefix else key
            errors[name] = relative_error(analytic[name], numerical_gradient(loss, value, eps))
    failed = {k: v for k, v in errors.items() if not v < tolerance}
    if failed and raise_on_failure:
        raise GradientCheckError(
            f"backward disagrees with finite differences (tolerance {tolerance:g}): "
            + ", ".join(f"{k}: {v:.2e}" for k, v in failed.items())
        )
    return errors
