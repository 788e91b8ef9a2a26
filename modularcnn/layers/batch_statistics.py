"""Whole-batch sums for layers whose training step depends on every sample of the batch.

Batch normalization normalises with the mean and variance of the whole batch, and its backward pass
needs whole-batch sums of ``dy`` and ``dy * x_hat``. When the batch is split across processes
(data-parallel training), each process sees only its rows, so such a layer computes *partial* sums
over its rows and asks its ``batch_reducer`` for the sum over every participant of the step. In one
process the partial sum is already the whole sum: :data:`ONE_PROCESS` returns it unchanged.

A layer never knows which strategy trains it: the strategy replaces ``layer.batch_reducer`` (see
``modularcnn/training/strategies``) on every layer whose ``syncs_batch_statistics`` is true.
"""


class BatchReducer:
    """Sums arrays over every participant of one training step; this base class is the one-process case.

    Every participant calls :meth:`sum` the same number of times, in the same order, with arrays of the
    same shape (each layer of the same network runs the same code), which is what lets a worker pool
    or an MPI all-reduce match the calls up.
    """

    #: Whether this participant writes the layer's shared state (batch-norm moving statistics). In one
    #: process, or when every participant has its own copy (MPI), each does; worker processes share one
    #: copy in shared memory, so only the first worker writes it.
    updates_state = True

    def sum(self, partial):
        """``partial`` (any shape) -> the element-wise sum of every participant's ``partial``, same
        shape and dtype."""
        return partial


#: The reducer of a layer that sees the whole batch.
ONE_PROCESS = BatchReducer()


def layers_with_batch_statistics(layers):
    """Every layer in ``layers`` and their sublayers (residual blocks) with ``syncs_batch_statistics``."""
    for layer in layers:
        if getattr(layer, "syncs_batch_statistics", False):
            yield layer
        yield from layers_with_batch_statistics(layer.sublayers)
