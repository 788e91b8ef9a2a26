"""What runs when a network computes: its execution plan, and the one function that chooses it.

A network is a list of layers; what actually runs is a list of *steps* (:class:`Plan`). A step is
either a layer itself — its own ``forward``/``backward``, the reference kernels of
:mod:`modularcnn.kernels` that a learner reads — or a fused step of :mod:`modularcnn.fusion` that
runs several layers as one through a fast kernel (same numbers, less memory traffic).

Every selection rule lives in :func:`select_step`, each one expression; nothing else in the library
decides which code runs. What it may choose is set by :class:`ExecutionOptions`:

- ``net.execution_options`` (``net.fusion = False`` is shorthand for ``fused=False``) per network;
- ``with modularcnn.reference_kernels(): ...`` for everything run inside the block, in this thread:
  every layer runs its own reference kernels;
- a worker process gets the options of its parent's network with every set-up
  (:func:`modularcnn.training.replica.replica_spec`), so both of the above reach it.

``net.plan()`` shows the plan (``print(net.plan())``), ``net.summary(show_plan=True)`` adds it to the
summary, and ``net.profile(...)`` times it step by step.

Dependency rule (checked by ``tests/test_dependencies.py``): ``kernels`` import only NumPy and each
other; ``layers`` import ``kernels`` (and the argument helpers: activations, initializers,
validation, errors); this module and :mod:`modularcnn.fusion` import ``layers`` and ``kernels``;
training, saving and ``Net`` import the rest. Layers never import the planner.
"""

import contextlib
import contextvars
import dataclasses
import math

import numpy as np

from .activations import ELU, LeakyReLU, Linear, ReLU, Sigmoid, Tanh
from .fast_steps import AveragePoolStep, BatchNormStep
from .fusion import FUSED_STEPS, FusedStep, PlannedResidual, WinogradConv
from .kernels.pooling import tiles_input
from .layers.convolutional import Convolutional
from .layers.base import all_layers
from .layers.core import Activation
from .layers.normalization import BatchNormalization
from .layers.pooling import AveragePooling, MaxPooling
from .layers.residual import Residual

#: With fewer input channels Winograd's products are too narrow to repay its transforms. Forward and
#: backward of a 14×14 batch of 32 against the slot-major layout: 4 channels (32 filters) 1.36 against
#: 1.34 ms, 6 channels (16 filters) 1.08 against 1.18 ms, 32 channels (64 filters) 6.8 against 9.7 ms.
WINOGRAD_MIN_CHANNELS = 6


@dataclasses.dataclass(frozen=True)
class ExecutionOptions:
    """What the planner may choose.

    Parameters
    ----------
    fused : bool, default True
        Run fusable runs of layers as one fused step (:mod:`modularcnn.fusion`).
    winograd : bool, default True
        Let a fused step use Winograd's reduced-arithmetic convolution (3×3 kernels). A 3×3
        convolution that fuses with nothing runs Winograd only when both options are on
        (:class:`~modularcnn.fusion.WinogradConv`): ``fused=False`` leaves every layer to itself.

    ``ExecutionOptions.reference()`` turns both off: every layer runs its own reference kernels.
    """

    fused: bool = True
    winograd: bool = True

    def __post_init__(self):
        for field in dataclasses.fields(self):
            if not isinstance(getattr(self, field.name), bool):
                raise ValueError(f"ExecutionOptions: {field.name} must be True or False, got "
                                 f"{getattr(self, field.name)!r}")

    @classmethod
    def reference(cls):
        """Every layer on its own reference kernels."""
        return cls(fused=False, winograd=False)

    @property
    def is_reference(self):
        """True when no fast path may run."""
        return not (self.fused or self.winograd)

    def within(self, enclosing):
        """These options limited by an enclosing network's: each fast path stays on only where both
        allow it (``net.fusion = False`` on an outer network turns fusion off in a network nested
        in it as a layer, and an inner network's own ``fusion = False`` still holds)."""
        return ExecutionOptions(**{field.name: getattr(self, field.name) and getattr(enclosing, field.name)
                                   for field in dataclasses.fields(self)})

    def replace(self, **changes):
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        """The options as JSON-serialisable data (what a worker receives)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data):
        """The inverse of :meth:`to_dict`; unknown keys are refused."""
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"ExecutionOptions: unknown options {sorted(unknown)}; known: {sorted(names)}")
        return cls(**data)

    def describe(self):
        """``"fused steps on, Winograd on"``, or ``"reference kernels"``."""
        if self.is_reference:
            return "reference kernels"
        return (f"fused steps {'on' if self.fused else 'off'}, "
                f"Winograd {'on' if self.winograd else 'off'}")


_FORCED = contextvars.ContextVar("modularcnn_execution_options", default=None)


@contextlib.contextmanager
def reference_kernels():
    """``with modularcnn.reference_kernels(): net.fit(...)``: inside the block every network runs
    each layer on its own reference kernels, in this process and in its training workers.

    Useful to read (or step through) the code that a layer's docstring describes, and in tests that
    compare the fast paths with it. Blocks nest; the previous state returns when the block ends.
    """
    token = _FORCED.set(ExecutionOptions.reference())
    try:
        yield
    finally:
        _FORCED.reset(token)


#: The options of the network whose forward pass is running now, in this thread: a network nested
#: in it as a layer runs within them (:meth:`ExecutionOptions.within`).
_ENCLOSING = contextvars.ContextVar("modularcnn_enclosing_options", default=None)


@contextlib.contextmanager
def enclosing(options):
    """``with enclosing(options): ...`` — what a network's forward pass wraps around its layers, so
    that a network nested in them (``NestedModel``) plans within ``options``."""
    token = _ENCLOSING.set(options)
    try:
        yield
    finally:
        _ENCLOSING.reset(token)


def options_for(net):
    """The options ``net`` runs with now: a :func:`reference_kernels` block wins over the network's
    own ``execution_options`` (any object with ``fusion`` and no options gets ``fused=fusion``),
    which are limited by those of the network ``net`` is nested in, if any."""
    forced = _FORCED.get()
    if forced is not None:
        return forced
    options = getattr(net, "execution_options", None)
    if options is None:
        options = ExecutionOptions(fused=bool(getattr(net, "fusion", True)))
    outer = _ENCLOSING.get()
    return options if outer is None else options.within(outer)


# -- the rules -------------------------------------------------------------------------------------

def _plain_relu(activation):
    """``max(z, 0)`` exactly (not a leaky, capped or shifted ReLU)."""
    return type(activation) is ReLU and activation.plain


def _monotone(activation):
    """An element-wise, non-decreasing activation with a cheap derivative: it commutes with a max
    pool, so the fused step applies it after the pool (on a quarter of the values)."""
    return (_plain_relu(activation) or type(activation) in (Tanh, Sigmoid)
            or (type(activation) in (LeakyReLU, ELU) and activation.alpha >= 0))


def select_step(layers, i, options):
    """The step that runs ``layers[i:i + k]``, and ``k``: every selection rule of the engine.

    Returns ``(layers[i], 1)`` (the layer runs itself) unless a fused step applies, or a step of
    its own for that one layer (:func:`_single_step`).
    """
    layer, following = layers[i], layers[i + 1] if i + 1 < len(layers) else None
    # Batch normalization over the last (channels or units) axis: one-pass kernels, sums as products.
    fast_batch_norm = options.fused and isinstance(layer, BatchNormalization) and layer.features_last
    # ... and a plain ReLU layer right after it, applied in the same pass.
    relu_after = (fast_batch_norm and isinstance(following, Activation)
                  and _plain_relu(following.activation) and following.activity_regularizer is None)
    if fast_batch_norm:
        return BatchNormStep(layer, following if relu_after else None), (2 if relu_after else 1)
    conv, after = layers[i], layers[i + 1:i + 3]
    # An activation written as its own layer right after a convolution without one
    # (Activation("relu"), ReLU(), LeakyReLU()) is the same operation as activation= inside it.
    separate_activation = (
        isinstance(conv, Convolutional) and type(conv.activation) is Linear and len(after) == 2
        and isinstance(after[0], Activation) and _monotone(after[0].activation))
    between = tuple(after[:1]) if separate_activation else ()
    pool = after[len(between)] if len(after) > len(between) else None
    # A convolution with a non-decreasing activation (plain ReLU, leaky ReLU, ELU, tanh, sigmoid),
    # stride 1, a zero border, no dilation, one group, whose even
    # output goes straight into a 2x2, stride-2, unpadded max pool: one fused step.
    fuse_conv_relu_pool = (
        options.fused
        and isinstance(conv, Convolutional) and conv.rank == 2
        and (separate_activation or _monotone(conv.activation))
        and conv.stride == (1, 1) and conv.pad_value == 0 and conv.dilation_rate == (1, 1)
        and conv.groups == 1 and conv.out_spatial[0] % 2 == 0 and conv.out_spatial[1] % 2 == 0
        and isinstance(pool, MaxPooling) and pool.rank == 2 and pool.pool_size == (2, 2)
        and pool.stride == (2, 2) and not any(any(p) for p in pool.pads))
    if not fuse_conv_relu_pool:
        return _single_step(conv, options), 1
    channels = conv.input_shape[-1]
    # One input channel: patches (a window row would be single values). 3x3 kernels with channels
    # enough to repay the transforms: Winograd. Otherwise slot-major im2col.
    layout = ("patch" if channels == 1
              else "winograd" if (options.winograd and conv.filter_size == (3, 3)
                                  and channels >= WINOGRAD_MIN_CHANNELS)
              else "slot_major")
    # Winograd's transforms are repaid by the backward pass: inference (no backward) runs slot-major,
    # which was faster for it (one image: 0.21 against 0.29 ms).
    inference_layout = "slot_major" if layout == "winograd" else layout
    activation = (between[0] if between else conv).activation
    step = FUSED_STEPS[layout](conv, pool, *between, inference_layout=inference_layout,
                               activation=None if _plain_relu(activation) else activation)
    return step, 2 + len(between)


def _winograd_geometry(conv):
    """A 2-D stride-1 3×3 convolution with a zero border, no dilation, one group, and channels
    enough to repay Winograd's transforms."""
    return (isinstance(conv, Convolutional) and conv.rank == 2 and conv.filter_size == (3, 3)
            and conv.stride == (1, 1) and conv.pad_value == 0 and conv.dilation_rate == (1, 1)
            and conv.groups == 1 and conv.input_shape[-1] >= WINOGRAD_MIN_CHANNELS)


def _single_step(layer, options):
    """The step of one layer that fuses with nothing after it (the rest of :func:`select_step`)."""
    # Any stride-1 3x3 convolution (any activation, any output size, 'same' or 'valid'): Winograd
    # in training, the layer's own forward in inference.
    winograd_alone = options.fused and options.winograd and _winograd_geometry(layer)
    # Average pooling whose windows tile the input (stride = pool size, no padding), any rank:
    # sums over reshaped axes, no per-window counts.
    fast_average_pool = (options.fused and isinstance(layer, AveragePooling)
                         and tiles_input(layer.pool_size, layer.stride, layer.pads))
    # A residual block whose block or shortcut holds a step of its own: both run their plans.
    planned_residual = options.fused and isinstance(layer, Residual) and layer.built
    if winograd_alone:
        return WinogradConv(layer)
    if fast_average_pool:
        return AveragePoolStep(layer)
    if planned_residual:
        inner = plan(layer.block, options), plan(layer.shortcut_layers, options)
        if any(part.fused_steps for part in inner):
            return PlannedResidual(layer, inner[0].steps, inner[1].steps)
    return layer


def can_fuse(conv, pool, options=None):
    """True when :func:`select_step` runs ``conv`` then ``pool`` as one fused step."""
    return select_step([conv, pool], 0, options or ExecutionOptions())[1] > 1


# -- plans -----------------------------------------------------------------------------------------

def step_layers(step):
    """The layers a step runs: its ``layers`` (a fused step), or the step itself (a layer)."""
    return tuple(step.layers) if isinstance(step, FusedStep) else (step,)


def step_kernel(step):
    """What a step runs, in words: the fused kernel and its layout, or the layer's own passes."""
    if isinstance(step, FusedStep):
        return step.kernel
    return f"{type(step).__name__}.forward/backward (reference)"


class Plan:
    """The steps a network runs, in order; indexable like a list.

    ``str(plan)`` is a table: each step's kind, the layers it runs and its kernel.
    """

    def __init__(self, steps, options, name="net"):
        self.steps = list(steps)
        self.options = options
        self.name = name
        # Kept once: a network compares it with its layers on every forward pass (one-image latency).
        self._layers = [layer for step in self.steps for layer in step_layers(step)]

    def __iter__(self):
        return iter(self.steps)

    def __len__(self):
        return len(self.steps)

    def __getitem__(self, index):
        return self.steps[index]

    @property
    def layers(self):
        """Every layer the plan runs, in order (the network's layers)."""
        return list(self._layers)

    def runs(self, layers):
        """True when the plan runs exactly ``layers`` (a list), in that order."""
        return self._layers == layers

    def kinds(self):
        """The class name of each step: ``["PatchConvReluPool", ..., "Dense"]``."""
        return [type(step).__name__ for step in self.steps]

    @property
    def fused_steps(self):
        """The steps that are not a layer running itself (fused steps, Winograd, planned blocks)."""
        return [step for step in self.steps if isinstance(step, FusedStep)]

    def rows(self):
        """``[step kind, layers, kernel]`` for each step."""
        return [[type(step).__name__, " + ".join(layer.name for layer in step_layers(step)),
                 step_kernel(step)] for step in self.steps]

    def __str__(self):
        from tabulate import tabulate  # noqa: PLC0415 - only for display

        title = f'Execution plan of "{self.name}" ({self.options.describe()}):'
        table = tabulate(self.rows(), headers=["Step", "Layers", "Runs"], tablefmt="simple")
        return f"{title}\n{table}"

    def __repr__(self):
        return f"<Plan {self.kinds()}>"


def plan(layers, options=None, name="net"):
    """The :class:`Plan` for ``layers`` (built) under ``options`` (default :class:`ExecutionOptions`)."""
    options = options or ExecutionOptions()
    steps, i = [], 0
    while i < len(layers):
        step, taken = select_step(layers, i, options)
        steps.append(step)
        i += taken
    return Plan(steps, options, name)


def plan_for(net):
    """The plan ``net`` runs now (its options, or a :func:`reference_kernels` block's)."""
    return plan(net.layers, options_for(net), getattr(net, "name", "net"))


#: ``predict`` runs a large batch through the network a slice of rows at a time, so that the widest
#: array a step writes for a slice is at most this size: it then stays in the core's caches from one
#: step to the next, and what the layers keep for a backward pass is a slice's, not the whole batch's.
#: Measured on the zoo's models with batches of 1,000 (medians of five, one process): the ResNet 460
#: to 365 ms, the ``best`` preset 290 to 157 ms, the DCGAN 309 to 176 ms, the Conv1D net 69 to 47 ms,
#: LeNet 70 to 63 ms; with 16 MiB most of that was lost again. Narrow networks (the MLP: 2 KB a
#: row) are not sliced, since more calls of small products cost more than the caches save.
INFERENCE_SLICE_BYTES = 4 << 20


def inference_rows(net, rows):
    """How many rows of a batch of ``rows`` ``predict`` runs through ``net`` at once.

    That is ``rows`` (the whole batch) when the widest per-sample array that the plan's steps write
    (the input, each step's output, the layers' inside a residual block) fits
    :data:`INFERENCE_SLICE_BYTES` that many times, and when some layer is not one of modularcnn's
    own: a custom layer might mix the samples of a batch in inference, and its outputs must not
    depend on a slicing it did not ask for. modularcnn's layers give each sample's output from that
    sample alone in inference, so the result is the same up to float rounding. (A fused conv + pool
    step never writes the convolution's whole output, so only the pooled one counts.)
    """
    if rows <= 1:                  # one image: answered at once (this runs in every predict call)
        return rows
    layers = list(all_layers(net.layers))
    if not all(type(layer).__module__.startswith("modularcnn.") for layer in layers):
        return rows
    itemsize = np.dtype(getattr(net, "dtype", np.float32)).itemsize
    entry = _per_sample_values(getattr(net, "input_shape", None))
    widest = max([entry] + [_per_sample_values(layer.output_shape) for layer in layers])
    if rows * widest * itemsize <= INFERENCE_SLICE_BYTES:    # even every layer's output fits
        return rows
    widest = entry
    for step in plan_for(net):
        inside = step_layers(step)
        widest = max([widest, _per_sample_values(inside[-1].output_shape)]
                     + [_per_sample_values(inner.output_shape)
                        for layer in inside for inner in all_layers(layer.sublayers)])
    most = max(1, INFERENCE_SLICE_BYTES // max(1, widest * itemsize))
    slices = -(-rows // most)
    return -(-rows // slices)   # slices of equal size: 1,000 rows by at most 891 go as 500 and 500


def _per_sample_values(shape):
    """Values per sample of a shape (a tuple of ints, or a list of them for several arrays)."""
    if not shape:
        return 0
    if all(isinstance(d, int) for d in shape):
        return math.prod(shape)
    return sum(_per_sample_values(part) for part in shape if isinstance(part, (tuple, list)))


def execution_plan(layers, fuse=True):
    """The steps of :func:`plan` as a list; ``fuse=False`` is the reference plan."""
    options = ExecutionOptions() if fuse else ExecutionOptions.reference()
    return plan(layers, options).steps
