"""Arrays a layer keeps between batches, so that a training step does not allocate them again."""

import math

import numpy as np


class Workspace:
    """Named scratch arrays, reused between batches.

    Only a layer's *internal* arrays live here (a zero-bordered padded input, the window matrix). Arrays
    handed to callers are always fresh: a caller may keep them while the layer runs again.

    Why reuse at all: a fresh multi-megabyte array takes a page fault for every 4 KiB when it is first
    written, whenever the allocator has given the memory back to the system in between.
    """

    def __init__(self):
        self._arrays = {}
        self._buffers = {}

    def get(self, name, shape, dtype, fill=None):
        """The array called ``name``, C-contiguous, of ``shape`` and ``dtype``.

        Without ``fill`` its contents are undefined: it is carved out of a flat buffer that only grows,
        so that a batch of another size (the last one of an epoch, or the slices of a batch) does not
        allocate again. With ``fill`` the array keeps its exact shape and is allocated and filled
        only when the shape or dtype changes: callers rely on what they did not overwrite (a zero
        border) staying as it was.
        """
        shape = tuple(shape)
        if fill is not None:
            array = self._arrays.get(name)
            if array is None or array.shape != shape or array.dtype != dtype:
                array = self._arrays[name] = np.full(shape, fill, dtype)
            return array
        size = math.prod(shape)
        key = (name, np.dtype(dtype))
        buffer = self._buffers.get(key)
        if buffer is None or buffer.size < size:
            buffer = self._buffers[key] = np.empty(size, dtype)
        return buffer[:size].reshape(shape)

    def clear(self):
        self._arrays.clear()
        self._buffers.clear()


def scratch(workspace, name, shape, dtype):
    """An array for temporary values: from ``workspace`` when there is one, else a new one."""
    return np.empty(shape, dtype) if workspace is None else workspace.get(name, shape, dtype)


def zeros(workspace, name, shape, dtype):
    """An array of zeros: kept in ``workspace`` when there is one (callers rewrite only its interior,
    so the zeros elsewhere stay), else a new one."""
    return np.zeros(shape, dtype) if workspace is None else workspace.get(name, shape, dtype, fill=0)
