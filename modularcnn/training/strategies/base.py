"""The interface every training strategy implements, and the parts data-parallel ones share.

A strategy decides *where* the training step runs (this process, worker processes, MPI ranks), never
*what* it computes: the step is always forward, loss, backward and one optimizer update on the
network, and every strategy gives the same numbers up to float rounding. ``fit`` and
``train_on_batch`` use it as::

    with strategy.open(net, batch_size, y_sample) as step:
        for x_batch, y_batch in batches:
            loss, outputs = step(x_batch, y_batch)

``open`` prepares whatever the strategy needs for batches of at most ``batch_size`` rows with targets
like ``y_sample`` (processes, shared memory, the network's copies) and the step returns the batch's mean
loss and the network's outputs ``(rows, *output_shape)``; on leaving the block ``net`` holds the trained
weights in ordinary arrays.

A data-parallel strategy (:class:`DataParallelStrategy`) splits each batch into contiguous pieces,
one per participant; each participant back-propagates its rows with the loss weighted by their share
of the batch (:func:`backpropagate_rows`), so that the participants' gradients *sum* to the gradient of
the whole batch (every built-in loss is a mean over the batch), and layers with batch statistics sum
them over the participants through a :class:`~modularcnn.layers.batch_statistics.BatchReducer`. A new
strategy (e.g. MPI, one participant per rank) implements three things: where the pieces run (``open``),
:meth:`DataParallelStrategy.sum_gradients` (an all-reduce) and the reducer each participant's layers
use (:func:`install_batch_reducer` with a reducer whose ``sum`` is an all-reduce).
"""

import numpy as np

from ...layers.batch_statistics import layers_with_batch_statistics


class Strategy:
    """Where training steps run. Subclasses set :attr:`name` and implement :meth:`open`."""

    #: The name ``fit(strategy=...)`` accepts.
    name = None

    def open(self, net, batch_size, y_sample):
        """A context manager yielding ``step(x, y, sample_weight=None, check_finite=False) ->
        (loss, outputs)``; with ``check_finite`` the step passes it (and its loss) on to
        :func:`~modularcnn.training.penalties.optimizer_step`, which refuses a non-finite step
        before the update. A step without that argument is taken unchecked.

        Parameters
        ----------
        net : Net
            A compiled network; it keeps its weights (ordinary arrays) when the block ends.
        batch_size : int
            The most rows a step will get.
        y_sample : array (1, ...)
            One target row: the shape and dtype of every batch's targets.
        """
        raise NotImplementedError

    def evaluate_batch(self, net, objective, x, y, sample_weight=None):
        """Inference on one validation batch: ``(its mean loss, outputs (rows, *output_shape))``, the
        activity penalties included (the weight penalties are added once by the caller).
        Here, in this process; a strategy whose participants each hold the network (MPI) splits it."""
        return objective.evaluate(x, y, sample_weight)

    #: Whether this process prints progress, runs the callbacks that write files and saves: every
    #: process but MPI's rank 0 is a chief of its own.
    is_chief = True

    def unsupported_reason(self, net):
        """Why this strategy cannot train ``net``, or None (every network trains in one process)."""
        return None

    @property
    def participants(self):
        """How many processes compute each step."""
        return 1

    def __repr__(self):
        return f"{type(self).__name__}()"


def split_rows(rows, parts):
    """``[(lo, hi)]``: ``rows`` cut into ``parts`` contiguous pieces whose sizes differ by at most one,
    the larger ones first (so the first participant has rows whenever any does)."""
    base, extra = divmod(rows, parts)
    bounds = [0]
    for part in range(parts):
        bounds.append(bounds[-1] + base + (part < extra))
    return list(zip(bounds[:-1], bounds[1:]))


def backpropagate_rows(objective, x_rows, y_rows, rows):
    """One participant's share of a step: forward and backward on its ``len(x_rows)`` of the batch's
    ``rows``, the loss weighted by that share. Leaves the gradients in the layers' ``grads``.

    Returns ``(weighted loss, outputs)``: the participants' weighted losses sum to the batch's mean.
    """
    share = len(x_rows) / rows
    value, outputs = objective.backpropagate(x_rows, y_rows, weight=share)
    return value * share, outputs


def install_batch_reducer(net, reducer):
    """Make every layer of ``net`` with batch statistics sum them through ``reducer``."""
    for layer in layers_with_batch_statistics(net.layers):
        layer.batch_reducer = reducer


def sum_in_order(parts, out):
    """``parts[0] + parts[1] + ...`` (two or more arrays), added in that order into ``out`` (which may
    be ``parts[0]`` itself). The order is fixed so that every run, and every worker summing its own
    range (:mod:`.sharded_update`), gives the same float sums."""
    np.add(parts[0], parts[1], out=out)
    for more in parts[2:]:
        out += more
    return out


class DataParallelStrategy(Strategy):
    """Each participant computes the gradients of its piece of the batch; they are summed before the
    optimizer step. Subclasses say where participants run and how sums travel."""

    def __init__(self, workers):
        self.workers = workers

    @property
    def participants(self):
        return self.workers

    def sum_gradients(self, partials, out):
        """The sum of the participants' gradient dicts ``partials`` (``{"layer/key": array}`` each),
        in participant order (the same sum every run), written into ``out``; returns the dict the
        optimizer should read (a lone partial is returned as it is)."""
        if len(partials) == 1:
            return partials[0]
        for key, total in out.items():
            sum_in_order([partial[key] for partial in partials], total)
        return out

    def __repr__(self):
        return f"{type(self).__name__}(workers={self.workers})"
