"""Fused steps: several layers run as one step by the fast kernels, the layers kept as they are.

A fused step stands in for a short run of layers in a network's execution plan
(:mod:`modularcnn.execution` decides when, :func:`~modularcnn.execution.select_step`). The layers stay
separate objects (their own parameters, summary rows and saved arrays); the step reads their
parameters, calls a pure kernel of :mod:`modularcnn.kernels` and hands the gradients back through the
layer's own method (``Convolutional.store_gradients``), so nothing outside the layer writes its state.

:class:`ConvReluPool` runs a ``Convolutional`` with a plain ReLU (``activation="relu"``, or an
``Activation("relu")``/``ReLU()`` layer right after it, which is then one of its ``layers`` and runs
nothing itself) followed by a 2×2 ``MaxPooling``
through :func:`~modularcnn.kernels.conv_pool.conv_relu_pool_forward` and its backward; the three
subclasses name its layouts (see :mod:`modularcnn.kernels.conv_pool`).

:class:`WinogradConv` runs one stride-1 3×3 ``Convolutional`` alone (any activation, any output size)
through :mod:`~modularcnn.kernels.winograd_conv` in training, and :class:`PlannedResidual` runs a
``Residual`` block with its block and shortcut planned like a network's layers, so that the
convolutions inside it get the same steps.
"""

from .kernels import conv_pool, winograd_conv
from .layers.convolutional import in_sample_slices


class FusedStep:
    """A step of a plan that is not a layer running itself: what the planner's other steps share.

    ``layers`` are the network's layers it stands for (in order); ``kernel`` says what runs, in words.
    """

    layers = ()
    kernel = ""

    def __repr__(self):
        return f"<{type(self).__name__} {' + '.join(layer.name for layer in self.layers)}>"


class ConvReluPool(FusedStep):
    """One fused step: forward ``(N, H, W, C) -> (N, Ho/2, Wo/2, F)`` and its backward.

    ``layers`` are the layers it runs, first the convolution, last the pool. ``layout`` (a class
    attribute of the subclasses) is the kernel layout of training steps; ``inference_layout`` (chosen
    by the planner) the one of inference passes. The step honours ``conv.input_grad_needed``.
    """

    #: The layout of :func:`~modularcnn.kernels.conv_pool.conv_relu_pool_forward` in training.
    layout = None
    #: Winograd's chunks of samples (bytes); see :mod:`modularcnn.kernels.conv_pool`.
    CHUNK_BYTES = conv_pool.WINOGRAD_CHUNK_BYTES

    def __init__(self, conv, pool, *between, inference_layout=None, activation=None):
        self.conv, self.pool = conv, pool
        #: None: a plain ReLU; else the non-decreasing activation the kernel applies after the pool.
        self.activation = activation
        self.layers = (conv, *between, pool)
        self.pooled_shape = (conv.out_spatial[0] // 2, conv.out_spatial[1] // 2)
        self.kernel_size = conv.filter_size
        self.inference_layout = inference_layout or self.layout
        self._inference_input = None
        self._cache = None

    @property
    def kernel(self):
        """What runs, for plans and profiles: ``"conv_relu_pool, <layout> layout"``."""
        name = "relu" if self.activation is None else self.activation.name
        text = f"conv_{name}_pool, {self.layout} layout"
        if self.inference_layout != self.layout:
            text += f" (inference: {self.inference_layout})"
        return text

    def scratch_values(self, batch):
        """Values of the largest scratch matrix an inference pass makes for ``batch`` samples."""
        return conv_pool.scratch_values(self.inference_layout, batch, self.pooled_shape,
                                        self.conv.params["kernel"].shape)

    def forward(self, x, training=False):
        """``(N, H, W, C) -> (N, Ho/2, Wo/2, F)``. In inference, a batch whose window matrix would
        exceed ``Convolutional.INFERENCE_WINDOW_BYTES`` goes a slice of samples at a time, which
        bounds memory (10,000 images in batches of 1,000 would otherwise need 225 MB for the Keras
        example CNN's second layer)."""
        self.conv.check_input(x)
        self._training = training
        if training:
            self._inference_input = None
            return self._forward(x)
        # Inference keeps nothing for a backward pass (no pool routes or ReLU masks: a single image
        # takes 8 operations fewer); a backward pass after it redoes the forward pass in training mode.
        self._inference_input = x
        y, _ = in_sample_slices(self._forward, x, self.scratch_values(1) * x.itemsize,
                                (*self.pooled_shape, self.conv.filters),
                                self.conv.INFERENCE_WINDOW_BYTES)
        return y

    def _forward(self, x):
        """The kernel on a batch (or a slice of one, in inference)."""
        conv = self.conv
        y, self._cache = conv_pool.conv_relu_pool_forward(
            x, conv.params["kernel"], conv.params.get("bias"), conv.pads,
            self.layout if self._training else self.inference_layout, self._training,
            conv.workspace, self.CHUNK_BYTES, self.activation)
        return y

    def backward(self, dy):
        if self._inference_input is not None:
            self._training = True
            self._forward(self._inference_input)
            self._inference_input = None
        conv = self.conv
        dx, d_kernel, d_bias = conv_pool.conv_relu_pool_backward(
            dy, self._cache, conv.params["kernel"], conv.input_grad_needed, conv.workspace)
        conv.store_gradients(d_kernel, d_bias)
        return dx


class SlotMajorConvReluPool(ConvReluPool):
    """Several input channels: slot-major im2col rows, slot planes ``(Q, F)``."""

    layout = "slot_major"


class PatchConvReluPool(ConvReluPool):
    """One input channel: a ``(kh+1) × (kw+1)`` patch per pool window, slot planes ``(4, F, Q)``."""

    layout = "patch"


class WinogradConvReluPool(ConvReluPool):
    """3×3 kernels, many channels: Winograd's F(2×2, 3×3), whose 2×2 output blocks are the pool
    windows; see :mod:`modularcnn.kernels.winograd`."""

    layout = "winograd"

    def _chunks(self, x):
        """Slices of samples of ``x`` (N, H, W, C) that a training step transforms one at a time."""
        return conv_pool.winograd_chunks(x.shape, self.pooled_shape, self.conv.filters, x.itemsize,
                                         self.CHUNK_BYTES)


class WinogradConv(FusedStep):
    """One stride-1 3×3 ``Convolutional`` (zero border, no dilation, one group, any activation and
    output size) whose training passes go through Winograd's F(2×2, 3×3)
    (:mod:`~modularcnn.kernels.winograd_conv`): forward ``(N, H, W, C) -> (N, Ho, Wo, F)``.

    The step computes the pre-activation ``z`` and hands it to the layer's own ``activate`` (so the
    activation, its saved values and any activity penalty are the layer's), and its backward pass
    starts from the layer's ``activation_gradient``. Inference runs the layer's own forward pass: the
    transforms are repaid by the backward pass, which inference does not have (and a backward pass
    after an inference pass then runs the layer's own backward, which rebuilds its windows).
    """

    #: Chunks of samples (bytes) of the transforms; see :mod:`modularcnn.kernels.conv_pool`.
    CHUNK_BYTES = conv_pool.WINOGRAD_CHUNK_BYTES

    def __init__(self, conv):
        self.conv = conv
        self.layers = (conv,)
        self._cache = None

    @property
    def kernel(self):
        """What runs, for plans and profiles."""
        return (f"winograd_conv then {self.conv.activation.name} (inference: "
                "Convolutional.forward)")

    def forward(self, x, training=False):
        conv = self.conv
        if not training:
            self._cache = None
            return conv.forward(x, training=False)
        conv.check_input(x)
        z, self._cache = winograd_conv.winograd_conv_forward(
            x, conv.params["kernel"], conv.params.get("bias"), conv.pads, conv.workspace,
            self.CHUNK_BYTES)
        return conv.activate(z)

    def backward(self, dy):
        return self.backward_preactivation(self.conv.activation_gradient(dy))

    def backward_preactivation(self, dz):
        """Backward from ``dL/dz`` (a fused softmax cross-entropy starts here)."""
        conv = self.conv
        if self._cache is None:        # the last forward pass was the layer's own (inference)
            return conv.backward_preactivation(dz)
        dx, d_kernel, d_bias = winograd_conv.winograd_conv_backward(
            dz, self._cache, conv.params["kernel"], conv.input_grad_needed, conv.workspace)
        conv.store_gradients(d_kernel, d_bias)
        return dx


class PlannedResidual(FusedStep):
    """A ``Residual`` whose block and shortcut run their own plans (``block_steps``,
    ``shortcut_steps``), chosen by the planner like a network's: ``y = shortcut(x) + block(x)``
    through :meth:`Residual.forward` with ``steps``, so the block's arithmetic stays the layer's."""

    def __init__(self, residual, block_steps, shortcut_steps):
        self.residual = residual
        self.layers = (residual,)
        self.steps = (list(block_steps), list(shortcut_steps))

    @property
    def kernel(self):
        """What runs, for plans and profiles: the kinds of the inner steps."""
        block, shortcut = ([type(step).__name__ for step in steps] for steps in self.steps)
        return f"block: {', '.join(block)}; shortcut: {', '.join(shortcut) or 'identity'}"

    def forward(self, x, training=False):
        return self.residual.forward(x, training=training, steps=self.steps)

    def backward(self, dy):
        return self.residual.backward(dy, steps=self.steps)


#: The step class of each layout.
FUSED_STEPS = {cls.layout: cls for cls in (SlotMajorConvReluPool, PatchConvReluPool,
                                           WinogradConvReluPool)}
