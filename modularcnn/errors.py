"""The library's own exception types.

Every error a user can cause with bad input is a ``ValueError`` (or a subclass of it), so that a single
``except ValueError`` catches all of them, while the subclasses let callers tell the kinds apart.
"""


class ModelFileError(ValueError):
    """A model or weights file that cannot be read: damaged, truncated, of a future version, or unknown."""


class ShapeError(ValueError):
    """An array or a layer whose shape does not fit where it is used."""


class ArgumentError(ValueError):
    """A constructor or method argument of the wrong type or out of range (see :mod:`modularcnn.validation`).

    The message names the owner (``"Dense"``, ``"Net.fit"``), the argument, what was expected and what
    came, e.g. ``Dense: units must be a positive int, got 28.7``.
    """


class DataError(ValueError):
    """Training or prediction data that cannot give the batches asked for: a generator yielding the wrong
    shapes or dtypes, an empty ``Sequence``, a closed HDF5 file, a source that ran out too early."""


class NonFiniteLossError(ValueError):
    """The first training step of a ``fit`` (or a ``train_on_batch``) whose loss or gradients are not
    finite: NaN, inf, or gradients too large to square in the network's dtype (finite inputs such as
    ``x * 1e30`` overflow float32 arithmetic). Raised before the optimizer runs, so no weight,
    optimizer slot or moving statistic has changed; the message gives the batch's largest input and
    target (see :mod:`modularcnn.training.finite`)."""
