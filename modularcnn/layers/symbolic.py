"""Symbolic tensors: what calling a layer on ``Input(...)`` returns, as Keras's ``KerasTensor``.

A :class:`SymbolicTensor` holds no numbers, only a shape (batch axis ``None`` first), a dtype and the
:class:`Node` that made it. Calling a layer on symbolic tensors (:func:`call_symbolic`, reached
through ``layer(x)``) builds the layer for the inputs' shapes — so a kernel larger than its input or a
``Dense`` on a 4-D tensor fails right there, naming the layer and the shapes — and records a node:
*this layer, applied to these tensors, made this tensor*. Following nodes back from the outputs gives
the graph that :class:`modularcnn.Model` runs.

A layer may be called more than once (a *shared* layer, one set of weights): every call must give it
the shapes it was built for.
"""

import numpy as np

from ..errors import ShapeError


def format_shape(sample_shape):
    """``(28, 28, 1)`` -> ``"(None, 28, 28, 1)"``, as Keras prints a batch of unknown size."""
    return str((None, *sample_shape))


class Node:
    """One call of a layer: ``output = layer(inputs)``.

    Attributes
    ----------
    layer : Layer
    inputs : list of SymbolicTensor
        What the layer was called on, in order.
    packed : bool
        True when the call passed a list (a merge layer's inputs), False for a single tensor: the
        layer's ``forward`` then gets a list of arrays, and its ``backward`` returns a list.
    output : SymbolicTensor
    """

    def __init__(self, layer, inputs, packed, output_shape, dtype):
        self.layer = layer
        self.inputs = list(inputs)
        self.packed = packed
        self.output = SymbolicTensor(output_shape, dtype, node=self)

    @property
    def parents(self):
        """The nodes that made this node's inputs."""
        return [tensor.node for tensor in self.inputs]

    def __repr__(self):
        return f"<Node {self.layer.describe()} inputs={len(self.inputs)}>"


class SymbolicTensor:
    """A placeholder for an array in a graph: its shape, dtype and the node that produces it.

    Parameters
    ----------
    sample_shape : tuple of int
        The per-sample shape (no batch axis), e.g. ``(28, 28, 1)``.
    dtype : numpy dtype
    node : Node
        The layer call that produces it (an :class:`~modularcnn.layers.InputLayer`'s for ``Input``).
    """

    def __init__(self, sample_shape, dtype, node=None):
        self.sample_shape = tuple(int(d) for d in sample_shape)
        self.dtype = np.dtype(dtype)
        self.node = node

    @property
    def shape(self):
        """``(None, *sample_shape)``: the batch axis is unknown, as in Keras."""
        return (None,) + self.sample_shape

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def name(self):
        """The name of the layer that produces this tensor (an ``Input``'s own name)."""
        return self.node.layer.name if self.node is not None else None

    def __repr__(self):
        return (f"<SymbolicTensor shape={format_shape(self.sample_shape)} dtype={self.dtype.name} "
                f"name={self.name!r}>")

    def __array__(self, *args, **kwargs):
        raise TypeError("a SymbolicTensor holds no values: build a Model(inputs, outputs) and call "
                        "predict, or call the layer on a NumPy array")

    def __bool__(self):
        raise TypeError("a SymbolicTensor has no truth value (it holds no numbers)")


def is_symbolic(value):
    """True for a SymbolicTensor or a non-empty list/tuple of them."""
    if isinstance(value, SymbolicTensor):
        return True
    return (isinstance(value, (list, tuple)) and len(value) > 0
            and all(isinstance(item, SymbolicTensor) for item in value))


def _shapes_text(tensors):
    shapes = [format_shape(tensor.sample_shape) for tensor in tensors]
    return shapes[0] if len(shapes) == 1 else "[" + ", ".join(shapes) + "]"


def call_symbolic(layer, inputs):
    """Record ``layer(inputs)`` on symbolic tensors; returns the output :class:`SymbolicTensor`.

    The first call builds the layer for the inputs' shapes (with their dtype); later calls (a shared
    layer) must bring the same shapes. Errors are raised here, naming the layer and the shapes.
    """
    packed = isinstance(inputs, (list, tuple))
    tensors = list(inputs) if packed else [inputs]
    if packed and not layer.multiple_inputs:
        raise ShapeError(f"{layer.describe()} takes one input tensor, got a list of {len(tensors)}")
    if not packed and layer.multiple_inputs:
        raise ShapeError(f"{layer.describe()} takes a list of input tensors (e.g. [x, y]), got one "
                         f"tensor of shape {format_shape(tensors[0].sample_shape)}")
    dtypes = {tensor.dtype for tensor in tensors}
    if len(dtypes) > 1:
        raise ValueError(f"{layer.describe()}: its inputs have different dtypes "
                         f"{sorted(d.name for d in dtypes)}")
    dtype = dtypes.pop()
    shape = [t.sample_shape for t in tensors] if packed else tensors[0].sample_shape
    if layer.built:
        if _normalised(layer.input_shape) != _normalised(shape):
            raise ShapeError(
                f"{layer.describe()} was built for inputs {_built_text(layer.input_shape)} and is now "
                f"called on {_shapes_text(tensors)}: a shared layer needs the same shapes at every call"
            )
    else:
        requested = layer.requested_input_shape
        if requested is not None and not packed and tuple(requested) != shape:
            raise ShapeError(f"{layer.describe()}: input_shape={tuple(requested)} was given, but it is "
                             f"called on {_shapes_text(tensors)}")
        layer.dtype = dtype
        try:
            layer.build_checked(shape)
        except ValueError as error:
            layer.built, layer.params, layer.output_shape = False, {}, None
            called = f"called on {_shapes_text(tensors)}"
            message = (f"{error} ({called})" if layer.describe() in str(error)
                       else f"{layer.describe()} {called}: {error}")
            raise ShapeError(message) from None
    return Node(layer, tensors, packed, layer.output_shape, dtype).output


def _normalised(shape):
    if shape and isinstance(shape[0], (list, tuple)):
        return [tuple(s) for s in shape]
    return tuple(shape)


def _built_text(shape):
    if shape and isinstance(shape[0], (list, tuple)):
        return "[" + ", ".join(format_shape(s) for s in shape) + "]"
    return format_shape(shape)
