"""Merge layers: combine a list of tensors into one, as Keras's ``Add``, ``Concatenate``, ``Dot``, ...

Each is called on a list (``Add()([x, y])``): ``build`` gets the list of per-sample shapes, ``forward``
a list of arrays ``(N, *shape_i)``, and ``backward`` returns the list of their gradients, one per input,
each of its input's shape.

The element-wise layers (:class:`Add`, :class:`Subtract`, :class:`Multiply`, :class:`Average`,
:class:`Maximum`, :class:`Minimum`) take inputs of one rank whose axes are equal or 1 (Keras's
broadcasting: ``(4, 4, 8)`` and ``(1, 1, 8)`` give ``(4, 4, 8)``); the gradient of a broadcast input is
summed over the axes it was stretched along. Inputs of different ranks are refused.
"""

import numpy as np

from .. import validation
from ..errors import ShapeError
from .base import Layer, register_layer


def _shape_list(layer, input_shape, minimum):
    """``input_shape`` as a list of per-sample shape tuples, at least ``minimum`` of them."""
    if not (isinstance(input_shape, (list, tuple)) and input_shape
            and all(isinstance(s, (list, tuple)) for s in input_shape)):
        raise ShapeError(f"{layer.describe()} must be called on a list of tensors, got shape "
                         f"{input_shape!r}")
    shapes = [tuple(int(d) for d in s) for s in input_shape]
    if len(shapes) < minimum:
        raise ShapeError(f"{layer.describe()} needs at least {minimum} inputs, got {len(shapes)}")
    return shapes


def _unbroadcast(gradient, shape):
    """Sum ``gradient`` (N, *out) over the axes where the per-sample ``shape`` has 1 and out does not."""
    axes = tuple(axis + 1 for axis, (size, out) in enumerate(zip(shape, gradient.shape[1:]))
                 if size == 1 and out != 1)
    return gradient.sum(axis=axes, keepdims=True) if axes else gradient


class _ElementWise(Layer):
    """An element-wise merge of inputs of one rank with Keras's size-1 broadcasting."""

    multiple_inputs = True
    #: The fewest and most inputs the operation takes (None: no limit).
    min_inputs, max_inputs = 1, None

    def compute_output_shape(self, input_shape):
        shapes = _shape_list(self, input_shape, self.min_inputs)
        if self.max_inputs is not None and len(shapes) > self.max_inputs:
            raise ShapeError(f"{self.describe()} takes exactly {self.max_inputs} inputs, got {len(shapes)}")
        if len({len(s) for s in shapes}) > 1:
            raise ShapeError(f"{self.describe()}: inputs of different ranks cannot be merged: "
                             f"{[(None, *s) for s in shapes]}")
        out = []
        for sizes in zip(*shapes):
            wide = {d for d in sizes if d != 1}
            if len(wide) > 1:
                raise ShapeError(f"{self.describe()}: inputs of shapes {[(None, *s) for s in shapes]} "
                                 "cannot be merged: each axis must be equal or 1")
            out.append(wide.pop() if wide else 1)
        return tuple(out)

    def build(self, input_shape):
        self.output_shape = self.compute_output_shape(input_shape)
        self.input_shape = [tuple(int(d) for d in s) for s in input_shape]
        self.built = True

    def _check(self, inputs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) != len(self.input_shape):
            raise ValueError(f"{self.describe()}: expected a list of {len(self.input_shape)} arrays, "
                             f"got {type(inputs).__name__}")
        for x, shape in zip(inputs, self.input_shape):
            if tuple(x.shape[1:]) != shape:
                raise ValueError(f"{self.describe()}: expected inputs of shapes "
                                 f"{[(None, *s) for s in self.input_shape]}, got "
                                 f"{[tuple(a.shape) for a in inputs]}")

    def forward(self, inputs, training=False):
        self._check(inputs)
        self._inputs = list(inputs)
        return self._combine(self._inputs)

    def backward(self, dy):
        grads = self._gradients(dy, self._inputs)
        return [_unbroadcast(g, s) for g, s in zip(grads, self.input_shape)]


@register_layer
class Add(_ElementWise):
    """``x_1 + x_2 + ...``."""

    def _combine(self, xs):
        out = xs[0] + xs[1] if len(xs) > 1 else xs[0].copy()
        for x in xs[2:]:
            out += x
        return out

    def _gradients(self, dy, xs):
        # The same array for every input: nothing downstream writes into a gradient it was given.
        return [dy] * len(xs)


@register_layer
class Subtract(_ElementWise):
    """``x_1 - x_2`` (exactly two inputs)."""

    min_inputs = max_inputs = 2

    def _combine(self, xs):
        return xs[0] - xs[1]

    def _gradients(self, dy, xs):
        return [dy, -dy]


@register_layer
class Multiply(_ElementWise):
    """``x_1 * x_2 * ...`` element-wise."""

    def _combine(self, xs):
        out = xs[0] * xs[1] if len(xs) > 1 else xs[0].copy()
        for x in xs[2:]:
            out *= x
        return out

    def _gradients(self, dy, xs):
        # d/dx_i is the product of the others, formed without dividing (exact with zeros).
        grads = []
        for i in range(len(xs)):
            g = dy
            for j, x in enumerate(xs):
                if j != i:
                    g = g * x
            grads.append(g)
        return grads


@register_layer
class Average(_ElementWise):
    """``(x_1 + ... + x_n) / n``."""

    def _combine(self, xs):
        return Add._combine(self, xs) / xs[0].dtype.type(len(xs))

    def _gradients(self, dy, xs):
        return [dy / dy.dtype.type(len(xs))] * len(xs)


class _Extremum(_ElementWise):
    """Element-wise maximum or minimum; the gradient goes to the input that gave the value (the
    first of them on a tie)."""

    pick = None

    def _combine(self, xs):
        out = xs[0]
        for x in xs[1:]:
            out = self.pick(out, x)
        return out if len(xs) > 1 else out.copy()

    def _gradients(self, dy, xs):
        out = self._combine(xs)
        taken = np.zeros(np.broadcast_shapes(*[x.shape for x in xs]), dtype=bool)
        grads = []
        for x in xs:
            mine = (x == out) & ~taken
            taken |= mine
            grads.append(np.where(mine, dy, 0).astype(dy.dtype, copy=False))
        return grads


@register_layer
class Maximum(_Extremum):
    """``max(x_1, x_2, ...)`` element-wise."""

    pick = staticmethod(np.maximum)


@register_layer
class Minimum(_Extremum):
    """``min(x_1, x_2, ...)`` element-wise."""

    pick = staticmethod(np.minimum)


def _sample_axis(layer, axis, rank, what="axis"):
    """A Keras axis (0 is the batch axis, negative counts from the end) as a per-sample axis index."""
    full = axis + rank + 1 if axis < 0 else axis
    if not 1 <= full <= rank:
        raise ShapeError(f"{layer.describe()}: {what}={axis} is not a sample axis of a tensor of rank "
                         f"{rank + 1} (the batch axis 0 cannot be merged along)")
    return full - 1


@register_layer
class Concatenate(Layer):
    """Join the inputs along ``axis`` (Keras's convention: ``-1``, the channels, by default; 0 is the
    batch axis and is refused). Every other axis must agree."""

    multiple_inputs = True

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = validation.integer(axis, "axis", "Concatenate")

    def compute_output_shape(self, input_shape):
        shapes = _shape_list(self, input_shape, 1)
        ranks = {len(s) for s in shapes}
        if len(ranks) > 1:
            raise ShapeError(f"{self.describe()}: inputs of different ranks: {[(None, *s) for s in shapes]}")
        axis = _sample_axis(self, self.axis, ranks.pop())
        rest = {s[:axis] + s[axis + 1:] for s in shapes}
        if len(rest) > 1:
            raise ShapeError(f"{self.describe()}: inputs {[(None, *s) for s in shapes]} differ on an axis "
                             f"other than the concatenation axis {self.axis}")
        out = list(shapes[0])
        out[axis] = sum(s[axis] for s in shapes)
        return tuple(out)

    def build(self, input_shape):
        self.output_shape = self.compute_output_shape(input_shape)
        self.input_shape = [tuple(int(d) for d in s) for s in input_shape]
        self._axis = _sample_axis(self, self.axis, len(self.input_shape[0])) + 1
        self.built = True

    def forward(self, inputs, training=False):
        _ElementWise._check(self, inputs)
        return np.concatenate(inputs, axis=self._axis)

    def backward(self, dy):
        bounds = np.cumsum([s[self._axis - 1] for s in self.input_shape])[:-1]
        return np.split(dy, bounds, axis=self._axis)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


@register_layer
class Dot(Layer):
    """The dot product of two tensors along ``axes`` for each sample (Keras's ``Dot``).

    ``axes`` is one axis for both inputs or a pair ``(axis_1, axis_2)``, counting the batch axis as 0.
    Inputs ``(N, *a)`` and ``(N, *b)`` contracted along one axis of each give ``(N, *a', *b')`` (the
    remaining axes of the first, then of the second); two vectors ``(N, d)`` give ``(N, 1)``.
    ``normalize=True`` L2-normalises both along their axes first (cosine similarity), as
    ``x / sqrt(max(sum(x**2), 1e-12))``.
    """

    multiple_inputs = True
    EPSILON = 1e-12

    def __init__(self, axes, normalize=False, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axes, (list, tuple)):
            if len(axes) != 2:
                validation.fail("Dot", "axes", "an int or a pair of ints", axes)
            self.axes = tuple(validation.integer(a, "axes", "Dot") for a in axes)
        else:
            self.axes = validation.integer(axes, "axes", "Dot")
        self.normalize = validation.boolean(normalize, "normalize", "Dot")

    def _sample_axes(self, shapes):
        pair = self.axes if isinstance(self.axes, tuple) else (self.axes, self.axes)
        return [_sample_axis(self, a, len(s), "axes") for a, s in zip(pair, shapes)]

    def compute_output_shape(self, input_shape):
        shapes = _shape_list(self, input_shape, 2)
        if len(shapes) != 2:
            raise ShapeError(f"{self.describe()} takes exactly 2 inputs, got {len(shapes)}")
        a1, a2 = self._sample_axes(shapes)
        if shapes[0][a1] != shapes[1][a2]:
            raise ShapeError(f"{self.describe()}: cannot contract axis {a1 + 1} of {(None, *shapes[0])} "
                             f"(size {shapes[0][a1]}) with axis {a2 + 1} of {(None, *shapes[1])} "
                             f"(size {shapes[1][a2]})")
        rest = shapes[0][:a1] + shapes[0][a1 + 1:] + shapes[1][:a2] + shapes[1][a2 + 1:]
        return rest or (1,)

    def build(self, input_shape):
        self.output_shape = self.compute_output_shape(input_shape)
        self.input_shape = [tuple(int(d) for d in s) for s in input_shape]
        self._axes = [a + 1 for a in self._sample_axes(self.input_shape)]
        self.built = True

    def _normalized(self, x):
        norm = np.sqrt(np.maximum(np.sum(x * x, axis=-1, keepdims=True), x.dtype.type(self.EPSILON)))
        return x / norm, norm

    def forward(self, inputs, training=False):
        _ElementWise._check(self, inputs)
        # Contraction axis last: (N, rest_i..., d), flattened to (N, R_i, d).
        moved = [np.moveaxis(x, axis, -1) for x, axis in zip(inputs, self._axes)]
        self._moved_shapes = [m.shape for m in moved]
        flat = [m.reshape(len(m), -1, m.shape[-1]) for m in moved]
        self._norms = None
        if self.normalize:
            (u, n1), (v, n2) = self._normalized(flat[0]), self._normalized(flat[1])
            self._raw, self._norms, flat = flat, (n1, n2), [u, v]
        self._flat = flat
        out = np.einsum("nid,njd->nij", flat[0], flat[1])
        return out.reshape((len(out),) + self.output_shape)

    def backward(self, dy):
        u, v = self._flat
        g = dy.reshape(len(dy), u.shape[1], v.shape[1])
        grads = [np.einsum("nij,njd->nid", g, v), np.einsum("nij,nid->njd", g, u)]
        if self.normalize:
            grads = [self._normalize_backward(gr, raw, normed, norm)
                     for gr, raw, normed, norm in zip(grads, self._raw, self._flat, self._norms)]
        out = []
        for gr, shape, axis in zip(grads, self._moved_shapes, self._axes):
            out.append(np.ascontiguousarray(np.moveaxis(gr.reshape(shape), -1, axis)))
        return out

    def _normalize_backward(self, grad, raw, normed, norm):
        # y = x / n with n = sqrt(sum x^2) gives dx = (g - y (y . g)) / n; where the norm was clipped
        # at sqrt(eps) it is a constant and dx = g / n.
        clipped = np.sum(raw * raw, axis=-1, keepdims=True) < self.EPSILON
        projected = grad - normed * np.sum(normed * grad, axis=-1, keepdims=True)
        return np.where(clipped, grad, projected) / norm

    def get_config(self):
        axes = list(self.axes) if isinstance(self.axes, tuple) else self.axes
        return {**super().get_config(), "axes": axes, "normalize": self.normalize}
