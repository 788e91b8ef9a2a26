"""``Sequence`` (alias ``PyDataset``): a dataset that makes its batches on request, as in Keras 3.

Subclass it, implement ``__len__`` (the number of batches) and ``__getitem__(index)`` (batch ``index``
as ``(x, y)``, ``(x, y, sample_weight)`` or, for ``predict``, ``x``), and optionally ``on_epoch_end``
(called after every epoch of ``fit``, e.g. to reshuffle). ``fit``, ``evaluate`` and ``predict`` take
it in place of arrays::

    class Batches(Sequence):
        def __init__(self, x, y, batch_size, **kwargs):
            super().__init__(**kwargs)   # workers=, use_multiprocessing=, max_queue_size=
            self.x, self.y, self.batch_size = x, y, batch_size
        def __len__(self):
            return -(-len(self.x) // self.batch_size)
        def __getitem__(self, index):
            rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
            return self.x[rows], self.y[rows]

How the batches are prepared is the dataset's own business, as in Keras 3, and not ``fit``'s:
``fit(workers=N)`` already means N data-parallel *training* processes in modularcnn. The constructor
arguments say how the batches are loaded while the network computes on the previous ones:

- ``workers=1`` (default): one background thread calls ``__getitem__``; right for I/O-bound loading
  (memmaps, HDF5, files) and anything that spends its time in NumPy, which releases the GIL.
- ``workers=N``: N threads call ``__getitem__`` on different batches at once.
- ``use_multiprocessing=True``: the N workers are processes (started with ``spawn``, so the dataset
  must be picklable and its class importable); for Python-heavy ``__getitem__`` that holds the GIL.
- ``max_queue_size`` (default 10, as in Keras): the most batches prepared ahead. At most
  ``min(max_queue_size, workers + 1)`` are in flight at once, so memory stays at a few batches.
"""

import numbers


class Sequence:
    """Base class for datasets that produce batches by index; see the module docstring.

    Parameters
    ----------
    workers : int, default 1
        Threads (or processes) that call ``__getitem__`` in the background.
    use_multiprocessing : bool, default False
        Use ``workers`` processes instead of threads.
    max_queue_size : int, default 10
        Upper bound on the batches prepared ahead of the one being computed on.
    """

    def __init__(self, workers=1, use_multiprocessing=False, max_queue_size=10):
        for name, value in (("workers", workers), ("max_queue_size", max_queue_size)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{type(self).__name__}: {name} must be a positive int, got {value!r}")
        if not isinstance(use_multiprocessing, bool):
            raise ValueError(f"{type(self).__name__}: use_multiprocessing must be True or False, "
                             f"got {use_multiprocessing!r}")
        self._workers = int(workers)
        self._use_multiprocessing = use_multiprocessing
        self._max_queue_size = int(max_queue_size)

    # Subclasses that forget super().__init__() still work, with the defaults.
    @property
    def workers(self):
        return getattr(self, "_workers", 1)

    @workers.setter
    def workers(self, value):
        self._workers = value

    @property
    def use_multiprocessing(self):
        return getattr(self, "_use_multiprocessing", False)

    @use_multiprocessing.setter
    def use_multiprocessing(self, value):
        self._use_multiprocessing = value

    @property
    def max_queue_size(self):
        return getattr(self, "_max_queue_size", 10)

    @max_queue_size.setter
    def max_queue_size(self, value):
        self._max_queue_size = value

    @property
    def num_batches(self):
        """The number of batches, ``len(self)`` (Keras 3 spelling)."""
        return len(self)

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must implement __len__ (number of batches)")

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__(index)")

    def on_epoch_begin(self):
        """Called before every epoch of ``fit``."""

    def on_epoch_end(self):
        """Called after every epoch of ``fit``: reshuffle, change augmentation, ..."""


#: Keras 3's name for the same class.
PyDataset = Sequence
