"""Fast steps for single operations any model may use: batch normalisation (with a ReLU after it)
and average pooling whose windows tile the input.

Like the fused steps of :mod:`modularcnn.fusion`, each class here stands in for one or two layers in
a network's execution plan (:func:`modularcnn.execution.select_step` decides when) and leaves the
layers as they are: it reads their parameters, runs a pure kernel of :mod:`modularcnn.kernels` and
hands results back through the layers' own methods (``update_moving_statistics``,
``store_gradients``), so nothing outside a layer writes its state. ``net.fusion = False`` or
``with modularcnn.reference_kernels():`` runs the layers' own reference passes instead.
"""

import numpy as np

from .fusion import FusedStep
from .kernels import batch_norm, pooling


class BatchNormStep(FusedStep):
    """A :class:`~modularcnn.layers.BatchNormalization` over the last axis, optionally followed by a
    plain ReLU layer (``Activation("relu")``/``ReLU()``) applied in the same pass: ``(N, ..., F)`` in
    and out.

    Training passes run :func:`~modularcnn.kernels.batch_norm.batch_norm_train_forward` and its
    backward with the layer's ``batch_reducer`` (synchronised batch norm across workers works as in
    the layer); inference is one affine map. The ReLU's mask comes from the output, as the ReLU layer
    takes it.
    """

    def __init__(self, norm, relu=None):
        self.norm, self.relu = norm, relu
        self.layers = (norm,) if relu is None else (norm, relu)

    @property
    def kernel(self):
        """What runs, for plans and profiles."""
        return "batch_norm" + ("_relu" if self.relu is not None else "") + ", one pass (rows x features)"

    def _parameters(self):
        p = self.norm.params
        return p.get("gamma"), p.get("beta")

    def forward(self, x, training=False):
        """``x`` (N, ..., F) -> ``y`` of the same shape, a new array."""
        norm = self.norm
        norm.check_input(x)
        rows = x.reshape(-1, x.shape[-1])
        gamma, beta = self._parameters()
        relu = self.relu is not None
        # As the layer: a frozen one (or one inside a frozen network) normalises as in inference.
        training = norm.uses_batch_statistics(training)
        self._training = training
        if training:
            y, self._cache, mean, variance = batch_norm.batch_norm_train_forward(
                rows, gamma, beta, norm.epsilon, norm.batch_reducer.sum, relu)
            norm.update_moving_statistics(mean, variance)
        else:
            p = norm.params
            y, self._scale = batch_norm.batch_norm_inference_forward(
                rows, p["moving_mean"], p["moving_variance"], gamma, beta, norm.epsilon, relu)
            self._cache = (rows, y if relu else None)
        return y.reshape(x.shape)

    def backward(self, dy):
        """``dL/dy`` (N, ..., F) -> ``dL/dx``; fills the layer's ``gamma``/``beta`` gradients.

        None when the layer is first and no one needs ``dL/dx`` (``input_grad_needed``)."""
        norm = self.norm
        rows = dy.reshape(-1, dy.shape[-1])
        if self._training:
            dx, dgamma, dbeta = batch_norm.batch_norm_train_backward(
                rows, self._cache, norm.batch_reducer.sum)
        else:
            # Moving statistics are constants: an affine map, whose gamma gradient still needs x_hat.
            x, relu_output = self._cache
            if relu_output is not None:
                rows = np.multiply(rows, relu_output > 0)
            p = norm.params
            inv_std = 1 / np.sqrt(p["moving_variance"] + p["moving_variance"].dtype.type(norm.epsilon))
            dbeta = batch_norm.column_sums(rows)
            dgamma = batch_norm.column_sums(rows * (x - p["moving_mean"])) * inv_std
            dx = rows * self._scale
        norm.store_gradients(dgamma, dbeta)
        if not norm.input_grad_needed:
            return None
        return dx.reshape(dy.shape)


class AveragePoolStep(FusedStep):
    """An :class:`~modularcnn.layers.AveragePooling` (any rank) whose windows tile the input (stride
    equal to the pool size, no padding), through
    :func:`~modularcnn.kernels.pooling.tiled_avg_pool_forward` and its backward: ``(N, *S, C)`` to
    ``(N, *S // pool_size, C)``, the same in training and inference."""

    def __init__(self, pool):
        self.pool = pool
        self.layers = (pool,)

    @property
    def kernel(self):
        """What runs, for plans and profiles."""
        return "tiled_avg_pool, reshaped sums (no window copies)"

    def forward(self, x, training=False):
        """``(N, *S, C) -> (N, *O, C)``, a new array."""
        self.pool.check_input(x)
        self._x_shape = x.shape
        return pooling.tiled_avg_pool_forward(x, self.pool.pool_size)

    def backward(self, dy):
        """``dL/dy`` (N, *O, C) -> ``dL/dx`` (N, *S, C); None for a first layer that needs none."""
        if not self.pool.input_grad_needed:
            return None
        return pooling.tiled_avg_pool_backward(dy, self._x_shape, self.pool.pool_size)
