"""``Input(shape)``: the start of a graph, and how a ``Net`` is told its input shape.

As in Keras, ``Input`` returns a :class:`~modularcnn.layers.symbolic.SymbolicTensor` made by an
:class:`InputLayer`, a layer without weights that only states the per-sample shape and dtype. Layers
called on it are built for that shape; ``Model(inputs, outputs)`` starts from it. A ``Net`` accepts it
as the first element of its layer list or in ``add`` (``Net([Input((28, 28, 1)), Conv2D(8, 3), ...])``):
it sets the network's input shape and adds no layer.
"""

from .. import validation
from .base import Layer, register_layer
from .symbolic import Node


@register_layer
class InputLayer(Layer):
    """The layer behind :func:`Input`: per-sample ``shape`` and ``dtype``, no weights, no computation.

    Parameters
    ----------
    shape : tuple of int
        Per-sample shape, without the batch axis, e.g. ``(28, 28, 1)``.
    dtype : str or numpy dtype, optional
        Floating dtype of the data; ``None`` means the model's (float32 by default).
    batch_size : int, optional
        Accepted for Keras compatibility and recorded; batches of any size are still accepted.
    name : str, optional
    input_shape : tuple of int, optional
        Keras's older spelling of ``shape``.
    """

    def __init__(self, shape=None, dtype=None, batch_size=None, name=None, input_shape=None,
                 sparse=None, batch_shape=None, **kwargs):
        owner = "InputLayer" if type(self) is InputLayer else type(self).__name__
        if sparse:
            raise ValueError(f"{owner}: sparse inputs are not supported (sparse={sparse!r})")
        if batch_shape is not None:
            if not isinstance(batch_shape, (list, tuple)) or len(batch_shape) < 2:
                validation.fail(owner, "batch_shape", "(batch, *shape) with at least one sample axis",
                                batch_shape)
            batch_shape = tuple(batch_shape)[1:]
        given = [s for s in (shape, input_shape, batch_shape) if s is not None]
        if not given:
            raise ValueError(f"{owner}: give the per-sample shape, e.g. shape=(28, 28, 1)")
        shape = validation.shape_tuple(given[0], "shape", owner)
        if any(validation.shape_tuple(other, "shape", owner) != shape for other in given[1:]):
            raise ValueError(f"{owner}: shape, input_shape and batch_shape disagree: {given}")
        super().__init__(name=name, **kwargs)
        self.dtype_requested = None if dtype is None else validation.float_dtype(dtype, "dtype", owner)
        self.batch_size = validation.positive_int(batch_size, "batch_size", owner, allow_none=True)
        self.build(shape)
        if self.dtype_requested is not None:
            self.dtype = self.dtype_requested
        self.output = Node(self, [], False, shape, self.dtype).output

    def forward(self, x, training=False):
        self.check_input(x)
        return x

    def backward(self, dy):
        return dy

    def get_config(self):
        config = {"shape": list(self.input_shape), "dtype": None if self.dtype_requested is None
                  else self.dtype_requested.name, "name": self.name}
        if self.batch_size is not None:
            config["batch_size"] = self.batch_size
        return config


def Input(shape=None, name=None, dtype=None, batch_size=None, batch_shape=None, sparse=None):  # noqa: N802 - Keras's name
    """A symbolic input of per-sample ``shape`` (no batch axis): the start of a graph model.

    >>> x = Input(shape=(28, 28, 1), name="image")
    >>> x.shape
    (None, 28, 28, 1)

    Parameters
    ----------
    shape : tuple of int
        Per-sample shape, e.g. ``(28, 28, 1)`` for MNIST images (channels last).
    name : str, optional
        The input's name: the key of its array when ``fit``/``predict`` take a dict.
    dtype : str or numpy dtype, optional
        Floating dtype; ``None`` means the model's (float32 unless the model says otherwise).
    batch_size, batch_shape, sparse
        As in Keras: ``batch_shape=(None, 28, 28, 1)`` may replace ``shape``; a fixed batch size is
        recorded but not enforced; sparse inputs are refused.

    Returns
    -------
    SymbolicTensor
        With ``.shape == (None, *shape)``, ``.dtype`` and ``.node.layer`` the :class:`InputLayer`.
    """
    return InputLayer(shape=shape, dtype=dtype, batch_size=batch_size, name=name,
                      batch_shape=batch_shape, sparse=sparse).output
