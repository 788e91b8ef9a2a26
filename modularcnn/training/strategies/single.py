"""Training in this process: the reference every other strategy must match."""

import contextlib

from ..penalties import optimizer_step
from .base import Strategy


def _check_no_sample_weight(sample_weight):
    if sample_weight is not None:
        raise ValueError("sample_weight: data-parallel workers do not weigh samples yet; train "
                         "weighted data with workers=1 (fit does so by itself with workers='auto')")


class SingleProcess(Strategy):
    """Forward, loss, backward and the optimizer step in this process (BLAS threads as configured)."""

    name = "single"

    @contextlib.contextmanager
    def open(self, net, batch_size, y_sample):
        from ..loop import objective_of  # noqa: PLC0415 - loop imports the strategies

        objective = objective_of(net)

        def step(x, y, sample_weight=None, check_finite=False):
            value, outputs = objective.backpropagate(x, y, sample_weight=sample_weight)
            value += optimizer_step(net, net.trainable_params(), net.trainable_grads(),
                                    check_finite=check_finite, loss=value)
            return value, outputs

        yield step
