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
