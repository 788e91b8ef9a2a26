"""``Rows``: the arrays of one batch for a model with several inputs (or outputs), indexed together.

The training loop treats a batch as something with ``len()`` (its rows) that can be sliced by rows;
``Rows`` gives a list of arrays exactly that: ``len(rows)`` is the number of samples and ``rows[key]``
(a slice or an index array) takes the same rows of every array. ``rows.arrays`` is the list itself.
"""

import numpy as np


class Rows:
    """Arrays with the same number of rows ``(N, ...)``, sliced together."""

    def __init__(self, arrays):
        self.arrays = list(arrays)
        counts = {len(a) for a in self.arrays}
        if len(counts) != 1:
            raise ValueError(f"arrays of one batch must have the same number of rows, got "
                             f"{[len(a) for a in self.arrays]}")

    def __len__(self):
        return len(self.arrays[0])

    def __getitem__(self, key):
        return Rows([a[key] for a in self.arrays])

    def __iter__(self):
        raise TypeError("iterate over rows.arrays (the arrays) explicitly; a Rows is sliced by rows")

    @property
    def nbytes(self):
        return sum(np.asarray(a).nbytes for a in self.arrays)

    def __repr__(self):
        return f"Rows({[getattr(a, 'shape', None) for a in self.arrays]})"
