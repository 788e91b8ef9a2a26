"""Arrays a layer keeps between batches, so that a training step does not allocate them again."""

import numpy as np


class Workspace:
    """Named scratch arrays, reused while their shape and dtype stay the same.

    Only a layer's *internal* arrays live here (a zero-bordered padded input, the window matrix). Arrays
    handed to callers are always fresh: a caller may keep them while the layer runs again.
    """

    def __init__(self):
        self._arrays = {}

    def get(self, name, shape, dtype, fill=None):
        """The array called ``name``, allocated (and filled with ``fill``) when the shape/dtype changes."""
        shape = tuple(shape)
        array = self._arrays.get(name)
        if array is None or array.shape != shape or array.dtype != dtype:
            array = np.empty(shape, dtype) if fill is None else np.full(shape, fill, dtype)
            self._arrays[name] = array
        return array

    def clear(self):
        self._arrays.clear()
