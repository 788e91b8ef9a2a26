"""Training in this process: the reference every other strategy must match."""

import contextlib

from .base import Strategy


def _check_no_sample_weight(sample_weight):
    if sample_weight is not None:
        raise ValueError("sample_weight: the training objective does not weigh samples yet; "
                         "pass sample_weight=None")


class SingleProcess(Strategy):
    """Forward, loss, backward and the optimizer step in this process (BLAS threads as configured)."""

    name = "single"

    @contextlib.contextmanager
    def open(self, net, batch_size, y_sample):
        from ..loop import objective_of  # noqa: PLC0415 - loop imports the strategies

        objective = objective_of(net)

        def step(x, y, sample_weight=None):
            _check_no_sample_weight(sample_weight)
            value, outputs = objective.backpropagate(x, y)
            net.optimizer.apply(net.trainable_params(), net.trainable_grads())
            return value, outputs

        yield step
