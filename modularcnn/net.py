"""``Net``: a stack of layers built one ``add`` at a time, Keras's ``Sequential`` for modularcnn.

The network owns what its layers share: the seeded random generator (weights, dropout, shuffling), the
compute dtype, and the unique layer names. Shape inference happens in :meth:`Net.add`: each layer is
built against the previous layer's output shape, so a mistake surfaces there, naming the layer, and not
halfway through training. Training, evaluation and saving live in their own modules and are reached
through the methods below.
"""

import math
import numbers

import numpy as np

from . import execution as _execution
from . import summary as _summary
from . import training as _training
from . import validation
from .execution import ExecutionOptions
from .layers.base import Layer, check_unclaimed, claim, frozen_scope, get_layer_class
from .layers.input_layer import InputLayer
from .layers.nested import register_network
from .layers.stack import LayerStack
from .layers.symbolic import SymbolicTensor, is_symbolic
from .model_api import KerasModelMethods, as_keras_result


@register_network
class Net(KerasModelMethods):
    """A sequential network; ``Sequential`` is another name for it.

    Parameters
    ----------
    input_shape : tuple of int, or a list of layers, optional
        Per-sample input shape, e.g. ``(28, 28, 1)`` (channels last). May instead be given to the first
        layer, or by an ``Input(shape)`` first in the layer list, as in Keras. A list of layers here is
        Keras's ``Sequential([Input((28, 28, 1)), Conv2D(...), ...])``: the same as ``layers=``.
    name : str, optional
        Shown by :meth:`summary` and stored in saved files.
    seed : int, optional
        Seeds every random draw (initial weights, dropout, shuffling, validation split): the same seed,
        data and arguments give bit-identical results.
    dtype : str or numpy dtype, default "float32"
        Compute dtype of weights and activations; inputs are cast to it. ``"float64"`` is for checks.
    layers : list of Layer, optional
        Added in order with :meth:`add` (an ``Input`` may come first).
    trainable : bool, default True
        False freezes every layer (the optimizer updates nothing).

    Attributes
    ----------
    execution_options : ExecutionOptions
        What the planner may run (:mod:`modularcnn.execution`): fused steps, Winograd. :meth:`plan`
        shows the steps; ``with modularcnn.reference_kernels():`` overrides the options in a block.
    fusion : bool, default True
        Shorthand for ``execution_options.fused``: :meth:`forward` and :meth:`backward` run a
        ``Convolutional(activation="relu")`` followed by a 2×2 ``MaxPooling`` as one fused step
        (:mod:`modularcnn.fusion`): the same numbers, less memory traffic. Set it to False to run
        every layer on its own.
    """

    def __init__(self, input_shape=None, name=None, seed=None, dtype="float32", layers=None,
                 trainable=True):
        if _is_layer_list(input_shape):
            # Keras's Sequential([...]): the first positional argument is the layer list.
            if layers is not None:
                raise ValueError("Net: got a list of layers as the first argument and layers= too; "
                                 "give one of them")
            input_shape, layers = None, input_shape
        dtype = validation.float_dtype(dtype, "dtype", "Net")
        trainable = validation.boolean(trainable, "trainable", "Net")
        seed = validation.seed(seed, "seed", "Net")
        if name is not None and not isinstance(name, str):
            validation.fail("Net", "name", "a string", name)
        if layers is not None and not isinstance(layers, (list, tuple)):
            validation.fail("Net", "layers", "a list of Layer instances (optionally after an Input)",
                            layers)
        self.name = name or "net"
        self.seed = seed
        self.dtype = dtype
        self.rng = np.random.default_rng(seed)
        self.input_shape = validation.shape_tuple(input_shape, "input_shape", "Net", allow_none=True)
        if layers is not None:
            for item in layers:
                if not isinstance(item, (Layer, Net, SymbolicTensor, InputLayer)):
                    validation.fail("Net", "layers", "Layer instances (optionally after an Input)", item)
        self._stack = LayerStack()
        self.trainable = trainable
        self.execution_options = ExecutionOptions()
        self._plan = None
        # Set by compile(); fit() compiles with the defaults when they are missing.
        self.optimizer = None
        self.loss = None
        self.metrics = []
        self.compiled = False
        self.history = None
        self.stop_training = False
        for layer in layers or ():
            self.add(layer)

    # -- building --------------------------------------------------------------------------------

    def add(self, layer):
        """Append ``layer``, building it against the current output shape. Returns the layer.

        Raises ``ValueError`` naming the layer when it cannot take that shape (a kernel larger than its
        padded input, a Dense whose stated ``units_in`` disagrees, ...) or when the first layer has no
        input shape.

        ``add(Input(shape))`` (or an ``InputLayer``), before any layer, sets the input shape (and the
        dtype, when the input states one) and adds no layer, as in Keras.
        """
        if isinstance(layer, (SymbolicTensor, InputLayer)):
            return self._set_input(layer)
        if isinstance(layer, Net):
            # A network added as one layer (Keras's Sequential/Model inside a Sequential).
            from .layers.nested import as_layer  # noqa: PLC0415 - nested imports net

            layer = as_layer(layer)
        if not isinstance(layer, Layer):
            raise ValueError(f"Net.add expects a Layer instance, got {layer!r}")
        if any(layer is existing for existing in self.layers):
            raise ValueError(f"layer {layer.name!r} is already in this network")
        check_unclaimed([layer], self, f"{self.name}.add")
        layer.name = self._stack.unique_name(layer)
        shape = self._input_shape_for(layer)
        # A failed build (a shape it cannot take, a parameter over the size bound) leaves no
        # half-built layer behind; a layer already built for this shape (called on an Input) is kept.
        self._stack.build_layer(layer, shape, self.rng, self.dtype, keep_built=True)
        if self.input_shape is None:
            self.input_shape = shape
        self.layers.append(layer)
        self._stack.count_name(layer)
        claim([layer], self)
        return layer

    @property
    def layers(self):
        """The layers, in order (a list; add layers with :meth:`add`)."""
        return self._stack.layers

    @layers.setter
    def layers(self, layers):
        self._stack.layers = list(layers)

    @property
    def fusion(self):
        """Whether fused steps may run: ``execution_options.fused``."""
        return self.execution_options.fused

    @fusion.setter
    def fusion(self, value):
        self.execution_options = self.execution_options.replace(fused=bool(value))

    def _set_input(self, given):
        """``add(Input(...))``: take the input shape (and a stated dtype) from it."""
        source = given.node.layer if isinstance(given, SymbolicTensor) else given
        if not isinstance(source, InputLayer):
            raise ValueError(
                f"Net.add takes layers or an Input(...); got a symbolic tensor made by "
                f"{source.describe()}: build graphs with modularcnn.Model(inputs, outputs)")
        shape = tuple(source.input_shape)
        if self.layers:
            raise ValueError(f"{self.name}: an Input{shape} can only come first, but the network "
                             f"already has {len(self.layers)} layers")
        if self.input_shape is not None and self.input_shape != shape:
            raise ValueError(f"{self.name}: Input{shape} disagrees with the network's "
                             f"input_shape={self.input_shape}")
        self.input_shape = shape
        if source.dtype_requested is not None:
            self.dtype = source.dtype_requested
        return given

    def _input_shape_for(self, layer):
        requested = layer.requested_input_shape
        if self.layers:
            shape = self.output_shape
            if requested is not None and tuple(requested) != shape:
                raise ValueError(
                    f"{layer.describe()}: input_shape={tuple(requested)} was given, but the previous "
                    f"layer {self.layers[-1].name!r} outputs {shape}"
                )
            return shape
        if requested is not None and self.input_shape is not None and tuple(requested) != self.input_shape:
            raise ValueError(
                f"{layer.describe()}: input_shape={tuple(requested)} disagrees with the network's "
                f"input_shape={self.input_shape}"
            )
        shape = requested or self.input_shape
        if shape is None:
            raise ValueError(
                f"{layer.describe()}: the first layer needs an input shape: pass input_shape=(H, W, C) "
                "to it or to Net(...)"
            )
        return tuple(shape)

    @property
    def output_shape(self):
        """Per-sample output shape of the last layer (the input shape for an empty network)."""
        return self.layers[-1].output_shape if self.layers else self.input_shape

    def count_params(self, trainable_only=False):
        """Number of scalars in all layers' ``params`` (only the trainable ones if asked)."""
        if trainable_only:
            if not self.trainable:
                return 0
            return self._stack.count_params(trainable_only=True)
        return self._stack.count_params()

    def summary(self, line_length=None, positions=None, print_fn=print, expand_nested=False,
                show_trainable=None, show_plan=False):
        """Print a table of layers, output shapes and parameter counts, with totals (as Keras does).

        ``expand_nested=True`` lists the layers inside blocks (``Residual``, nested networks) under
        them; ``line_length`` sets the table's width and ``positions`` where each column ends (as
        fractions of ``line_length`` or as character counts), wrapping long cells; ``show_trainable``
        adds a Trainable column (shown by default when something is frozen); ``show_plan=True`` adds
        the execution plan (:meth:`plan`): which step runs each layer.
        """
        validation.function(print_fn, "print_fn", "summary")
        print_fn(_summary.summary_text(self, show_trainable=show_trainable, show_plan=show_plan,
                                       expand_nested=expand_nested, line_length=line_length,
                                       positions=positions))

    def plan(self):
        """The steps :meth:`fit`, :meth:`predict` and :meth:`forward` run, as a
        :class:`~modularcnn.execution.Plan`: ``print(net.plan())`` shows, for each step, the layers it
        runs and its kernel (a fused step, or the layer's own reference passes)."""
        return _execution.plan_for(self)

    def trainable_params(self):
        """``{"layer/param": array}`` for every parameter the optimiser updates."""
        if not self.trainable:
            return {}
        return self._stack.trainable_params()

    def trainable_grads(self):
        """``{"layer/param": gradient}`` matching :meth:`trainable_params`, from the last backward."""
        if not self.trainable:
            return {}
        return self._stack.trainable_grads()

    # -- computing -------------------------------------------------------------------------------

    def __call__(self, inputs, training=None):
        """On symbolic tensors: this network as one layer of a graph (``Model``), as in Keras.
        On arrays: :meth:`forward` (inference unless ``training=True``), so ``model(x)`` gives the
        outputs as Keras's does (as an array)."""
        if is_symbolic(inputs):
            from .layers.nested import as_layer  # noqa: PLC0415 - nested imports net

            return as_layer(self)(inputs, training=training)
        return self.forward(inputs, training=bool(training))

    def as_input(self, x):
        """``x`` as a batch array of the network's dtype and input shape, or a ``ValueError``.

        Grayscale images ``(N, H, W)`` are accepted for a network whose input is ``(H, W, 1)``.
        """
        if self.input_shape is None:
            raise ValueError("the network has no layers yet: add layers before calling it")
        x = np.asarray(x)
        if x.dtype.kind not in "biuf":
            raise ValueError(f"input must be numeric, got an array of dtype {x.dtype}")
        expected = self.input_shape
        if x.ndim == len(expected) and expected[-1] == 1 and tuple(x.shape[1:]) == expected[:-1]:
            x = x[..., None]
        if x.ndim != len(expected) + 1 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"{self.name}: expected input of shape (N, {', '.join(map(str, expected))}), "
                f"got {tuple(x.shape)}"
            )
        return np.ascontiguousarray(x, dtype=self.dtype)

    def forward(self, x, training=False):
        """Run ``x`` (N, *input_shape) through every layer; ``training`` switches dropout and batch norm."""
        x = self.as_input(x)
        # The plan is kept while the layers and options stay the same: planning builds the fused
        # steps anew, which was a tenth of a one-image LeNet predict (6 rule checks per call).
        options, plan = _execution.options_for(self), self._plan
        if plan is None or plan.options != options or not plan.runs(self.layers):
            self._plan = _execution.plan(self.layers, options, self.name)
        # A frozen network's batch norms run as in inference; a network nested in this one as a
        # layer plans within this one's options (net.fusion = False reaches it).
        with frozen_scope(not self.trainable), _execution.enclosing(options):
            return self._stack.forward(x, training=training, steps=self._plan.steps)

    def backward(self, dout, input_gradient=True, preactivation=False):
        """Back-propagate ``dout`` = dL/d(output) (N, *output_shape) through every layer.

        Fills each layer's ``grads`` and returns dL/d(input), shape (N, *input_shape): the gradient with
        respect to the input, as used for saliency maps or to train a GAN's generator through its
        discriminator. ``input_gradient=False`` skips that last product (training does this).
        ``preactivation=True`` says ``dout`` is the gradient with respect to the last layer's logits
        (the input of its softmax/sigmoid), as a fused loss computes it
        (``loss.value_and_gradient_from_logits(y, net.layers[-1].preactivation)``).
        Uses what the last :meth:`forward` cached.
        """
        plan = self._plan
        if plan is None or not plan.runs(self.layers):
            raise ValueError("backward needs a forward pass of this network first")
        return self._stack.backward(dout, steps=plan.steps, input_grad_needed=input_gradient,
                                    preactivation=preactivation)

    def forwardpass(self, image):
        """The seed library's single-sample forward pass: one ``image`` (*input_shape), no batch axis.

        Returns the output for that sample, shape ``output_shape`` (e.g. ``(10,)`` probabilities),
        equal to ``predict(image[None])[0]``. It keeps what :meth:`backpass` needs.
        """
        sample = np.asarray(image)
        if self.input_shape is not None and sample.shape in (self.input_shape, self.input_shape[:-1]):
            return self.forward(sample[None], training=False)[0]
        expected = "" if self.input_shape is None else f" of shape {self.input_shape} (no batch axis)"
        raise ValueError(f"{self.name}: forwardpass takes one sample{expected}, got shape {sample.shape}; "
                         "use predict for a batch")

    def backpass(self, dL_dout, learn_rate):
        """The seed library's single-sample backward pass and plain gradient step.

        ``dL_dout`` is the loss gradient with respect to the output of the last :meth:`forwardpass`,
        shape ``output_shape`` (the seed's column ``(units, 1)`` is accepted too). Every trainable
        parameter then moves by ``-learn_rate * gradient``; the compiled optimizer is not used.
        """
        gradient = np.asarray(dL_dout, dtype=self.dtype)
        if self.output_shape is None or gradient.size != math.prod(self.output_shape):
            raise ValueError(f"{self.name}: backpass expects dL_dout of shape {self.output_shape}, "
                             f"got {gradient.shape}")
        if isinstance(learn_rate, bool) or not isinstance(learn_rate, numbers.Real) or not (
                math.isfinite(learn_rate) and learn_rate >= 0):
            raise ValueError(f"{self.name}: learn_rate must be a non-negative number, got {learn_rate!r}")
        self.backward(gradient.reshape((1,) + tuple(self.output_shape)), input_gradient=False)
        step = self.dtype.type(learn_rate)
        gradients = self.trainable_grads()
        for key, value in self.trainable_params().items():
            value -= step * gradients[key]

    # -- weights ---------------------------------------------------------------------------------

    def get_weights(self):
        """Copies of every layer's ``params`` (trainable and state), in layer order."""
        return [value.copy() for layer in self.layers for value in layer.params.values()]

    def set_weights(self, weights):
        """Copy ``weights`` (as from :meth:`get_weights`) into the layers' arrays, in place.

        Every count and shape is checked before anything changes.
        """
        targets = [(layer, key, value) for layer in self.layers for key, value in layer.params.items()]
        if not isinstance(weights, (list, tuple)):
            validation.fail("set_weights", "weights", "a list of arrays (as get_weights returns)",
                            weights)
        weights = list(weights)
        if len(weights) != len(targets):
            raise ValueError(f"set_weights: the network has {len(targets)} arrays, got {len(weights)}")
        for (layer, key, value), new in zip(targets, weights):
            try:
                np.shape(new)
            except ValueError:  # a ragged nested list: NumPy's "inhomogeneous shape" message
                raise ValueError(f"set_weights: {layer.name}/{key} needs an array of shape "
                                 f"{value.shape}, got a ragged nested list") from None
            if np.shape(new) != value.shape:
                raise ValueError(f"set_weights: {layer.name}/{key} has shape {value.shape}, "
                                 f"got {np.shape(new)}")
            if np.asarray(new).dtype.kind not in "biuf":  # copyto would raise TypeError mid-way
                raise ValueError(f"set_weights: {layer.name}/{key} needs real numbers, got an array "
                                 f"of dtype {np.asarray(new).dtype}")
        for (_, _, value), new in zip(targets, weights):
            np.copyto(value, new, casting="same_kind")

    # -- training --------------------------------------------------------------------------------

    def compile(self, optimizer="adam", loss="cross_entropy", metrics=("accuracy",)):
        """Set the optimizer, loss and metrics, each by name (``"adam"``, ``"mse"``) or instance.

        ``fit`` without ``compile`` uses these defaults. A softmax (or sigmoid) output with
        cross-entropy is computed in fused, numerically stable form from the logits.
        """
        _training.compile(self, optimizer, loss, metrics)

    def fit(self, x, y=None, epochs=1, batch_size=None, validation_split=0.0, validation_data=None,
            shuffle=True, callbacks=None, verbose=1, initial_epoch=0, augment=None, workers="auto",
            strategy=None, sample_weight=None, class_weight=None, steps_per_epoch=None,
            validation_steps=None, validation_batch_size=None):
        """Train with mini-batches; returns a :class:`~modularcnn.callbacks.History`.

        Parameters
        ----------
        x : array (N, *input_shape), np.memmap, h5py.Dataset, Sequence or generator
            Inputs; grayscale ``(N, H, W)`` is accepted for an ``(H, W, 1)`` input. Arrays of any
            numeric dtype, memmaps and HDF5 datasets are kept as they are and each batch is converted
            to the network's dtype when it is taken (:mod:`modularcnn.training.sources`). A
            :class:`~modularcnn.utils.Sequence` or a generator yields ``(x, y)`` or
            ``(x, y, sample_weight)`` batches itself (then give neither ``y`` nor ``batch_size``).
        y : array
            Integer class ids ``(N,)`` or one-hot rows ``(N, K)`` for cross-entropy; targets shaped like
            the output for other losses.
        batch_size : int, default 32
            For arrays only.
        validation_split : float in [0, 1)
            Fraction held out for validation: a seeded random sample, stratified by class (each class
            gives the same fraction), not the last rows as in Keras — ordered data stays usable.
            A memmap or HDF5 dataset is split by index, without a copy.
        validation_data : (x_val, y_val), (x_val, y_val, sample_weight), Sequence or generator
            Explicit validation set instead of ``validation_split``.
        shuffle : True, False or "batch"
            Reshuffle the training samples every epoch (with the network's seeded generator); the
            order of a Sequence's batches. ``"batch"`` shuffles the order of contiguous batches, for
            files where random rows are slow. Ignored for generators.
        callbacks : list of Callback
        verbose : 0, 1 or 2
            0 silent; 1 a progress bar per epoch and a line with validation figures; 2 one line per epoch.
        initial_epoch : int
            Epoch to start counting from (for resuming).
        augment : callable, optional
            ``augment(x_batch, rng=...) -> x_batch`` applied to every training batch, e.g. an
            :class:`~modularcnn.augment.ImageAugmenter`; validation data is never augmented.
        workers : "auto", 1 or int >= 2
            Shorthand for the strategy: processes that share every batch
            (:mod:`modularcnn.training.strategies.local`). Each computes the gradients of its rows
            with a one-thread BLAS, and they are summed before the update (in a large network with
            one of modularcnn's element-wise optimizers, each worker sums and updates its own share
            of the parameters: :mod:`~modularcnn.training.strategies.sharded_update`); batch
            normalization sums its statistics over all of them (synchronised), so the result matches
            one process up to float rounding. ``"auto"`` uses one per CPU core (``OMP_NUM_THREADS`` when set) for fits
            of at least ``AUTO_MIN_STEPS`` (100) batches of at least 16 rows per worker, or any fit
            once the network has workers running; 1 always trains in this process. ``N`` is refused
            above 4 per CPU core and never starts more workers than a batch has rows. The workers
            stay with the network for later ``fit`` and ``train_on_batch`` calls and stop when it is
            deleted, at exit, or with ``modularcnn.training.strategies.close_pool(net)``.
            (How a Sequence *loads* its batches is set in its own constructor:
            ``Sequence(workers=, use_multiprocessing=, max_queue_size=)``.)
            What still trains in one process (``"auto"``) or is refused (``N``): a layer whose
            training output depends on other samples without taking its sums through
            ``batch_reducer`` (``syncs_batch_statistics``), and a custom layer or loss a worker
            cannot rebuild: one not registered with ``@register_layer``, or defined in ``__main__``
            (a script or notebook) or inside a function; defined in an importable module, it trains
            in parallel (the worker imports that module by name).
        strategy : Strategy or str, optional
            Where each step runs (:mod:`modularcnn.training.strategies`): ``"single"``, ``"local"``
            (with ``workers`` as its count), ``"mpi"`` (one piece of every batch per MPI rank, under
            ``mpirun``: :mod:`modularcnn.training.strategies.mpi`) or an instance such as
            ``LocalWorkers(2)``; it overrides the ``workers`` rules
            (:func:`~modularcnn.training.strategies.choose_strategy`).
        sample_weight : array (N,), optional
            Weight of each training sample's loss: a batch's loss is ``sum(w * loss) / batch size``, as
            in Keras. Metrics are not weighted.
        class_weight : dict {class id: weight}, optional
            Weighs each training sample by its class (absent classes weigh 1); not with
            ``sample_weight``. Validation is never class-weighted.
        steps_per_epoch : int, optional
            Batches per epoch. Required for an endless generator; for arrays and Sequences an epoch is
            then that many batches of a pass that carries on into the next epoch (as in Keras).
        validation_steps : int, optional
            Batches of the validation data to evaluate on each epoch (all when None).
        validation_batch_size : int, optional
            Batch size for array validation data (default max(batch_size, 256)).

        A worker that is stopped or hung (silent for 30 s while it should answer) raises
        ``WorkerError`` instead of waiting forever; the weights of the last finished step are kept.
        Ctrl-C stops after the current batch, keeps the weights and returns the history so far; when
        the batch cannot finish within 2 s (a stopped worker), or on a second Ctrl-C, it raises
        ``KeyboardInterrupt``.
        """
        return _training.fit(self, x, y, epochs=epochs, batch_size=batch_size,
                             validation_split=validation_split, validation_data=validation_data,
                             shuffle=shuffle, callbacks=callbacks, verbose=verbose,
                             initial_epoch=initial_epoch, augment=augment, workers=workers,
                             strategy=strategy, sample_weight=sample_weight,
                             class_weight=class_weight, steps_per_epoch=steps_per_epoch,
                             validation_steps=validation_steps,
                             validation_batch_size=validation_batch_size)

    def train(self, x, y, epochs=50, learn_rate=1e-4, val_size=0.1, batch_size=32, **fit_kwargs):
        """The seed's one-liner: Adam at ``learn_rate`` (unless compiled otherwise), ``val_size`` held out.

        ``model.train(x, y, epochs=30, learn_rate=1e-4, val_size=0.1)`` is
        ``model.fit(x, y, epochs=30, validation_split=0.1)`` with the learning rate set.
        """
        if not self.compiled:
            self.compile(optimizer="adam")
        self.optimizer.learning_rate = float(learn_rate)
        return self.fit(x, y, epochs=epochs, batch_size=batch_size, validation_split=val_size,
                        **fit_kwargs)

    def evaluate(self, x, y=None, batch_size=None, verbose=0, sample_weight=None, steps=None,
                 callbacks=None, return_dict=False):
        """Loss and metrics over ``(x, y)`` in inference mode, as Keras returns them.

        Returns ``[loss, metric, ...]`` in the order of :attr:`metrics_names` (the loss alone, a
        float, when nothing else is compiled), or ``{"loss": ..., "<metric>": ...}`` with
        ``return_dict=True``. ``x`` takes everything :meth:`fit` takes; ``sample_weight`` (N,) weighs
        the loss as in ``fit``; ``steps`` limits the batches; ``callbacks`` get the ``on_test_*``
        hooks. At most a few batches are in memory at once.
        """
        return_dict = validation.boolean(return_dict, "return_dict", "Net.evaluate")
        logs = _training.evaluate(self, x, y, batch_size=batch_size, verbose=verbose,
                                  sample_weight=sample_weight, steps=steps, callbacks=callbacks)
        return logs if return_dict else as_keras_result(logs)

    def predict(self, x, batch_size=None, verbose=0, steps=None, callbacks=None, out=None):
        """Network outputs for ``x`` in inference mode, ``(N, *output_shape)``.

        ``x`` takes everything :meth:`fit` takes (a Sequence or generator may yield ``x`` alone). The
        result is one preallocated array, or ``out`` (e.g. a ``np.memmap`` larger than memory) when
        given; only a few input batches are held at once. ``verbose`` 1 or 2 (or ``"auto"``) prints
        one line when done; ``callbacks`` get the ``on_predict_*`` hooks (each batch's outputs as
        ``logs["outputs"]``).
        """
        return _training.predict(self, x, batch_size=batch_size, steps=steps, out=out,
                                 verbose=verbose, callbacks=callbacks)

    def predict_classes(self, x, batch_size=None):
        """Predicted class ids ``(N,)``."""
        return _training.predict_classes(self, x, batch_size=batch_size)

    def profile(self, x, y, batches=20, batch_size=64, print_fn=print):
        """Print per-layer forward/backward time of training steps; see :mod:`modularcnn.profiler`."""
        from .profiler import profile  # noqa: PLC0415 - the profiler is only needed on request
        return profile(self, x, y, batches=batches, batch_size=batch_size, print_fn=print_fn)

    def train_on_batch(self, x, y, sample_weight=None, class_weight=None):
        """One optimisation step on one batch; returns its loss and metrics."""
        return _training.train_on_batch(self, x, y, sample_weight=sample_weight,
                                        class_weight=class_weight)

    def test_on_batch(self, x, y, sample_weight=None):
        """Loss and metrics on one batch, in inference mode."""
        return _training.test_on_batch(self, x, y, sample_weight=sample_weight)

    # -- saving ----------------------------------------------------------------------------------

    def save(self, path, *, epoch=None, checkpoint=None):
        """Write the whole network to one HDF5 file; :func:`modularcnn.load_model` reads it back.

        The file holds the architecture, weights, compile settings, optimizer state and the random
        generator's state, so training continues exactly. It is replaced atomically: an interrupted
        save leaves the previous file intact. ``epoch`` (epochs trained; default from ``history``)
        and ``checkpoint`` (a JSON-able dict, e.g. ``ModelCheckpoint``'s best score) are stored with
        it and read back by :func:`modularcnn.saving.file_info`. A path ending in ``.keras`` gets a
        Keras 3 archive instead (architecture and weights), which ``keras.models.load_model`` opens.
        """
        from .saving import save_model  # imported here: saving imports modules that import this one

        save_model(self, path, epoch=epoch, checkpoint=checkpoint)

    def export_onnx(self, path, opset=17):
        """Write the network as an ONNX model for onnxruntime and other serving stacks.

        The model takes what :meth:`predict` takes — a channels-last batch ``(batch, *input_shape)``,
        the batch axis dynamic — and returns what it returns, in inference mode. Needs the ``onnx``
        package (``pip install modularcnn[onnx]``); see :mod:`modularcnn.export.onnx`.
        """
        from .export import export_onnx  # the optional onnx package is imported only here

        return export_onnx(self, path, opset=opset)

    def save_weights(self, path, *, epoch=None, checkpoint=None):
        """Write only the layers' arrays (moving statistics included) to an HDF5 file, atomically.

        ``epoch`` and ``checkpoint`` are stored as in :meth:`save`.
        """
        from .saving import save_weights

        save_weights(self, path, epoch=epoch, checkpoint=checkpoint)

    def load_weights(self, path):
        """Copy arrays saved by :meth:`save_weights` (or :meth:`save`) into this network, in place.

        Layers are matched by name, or in order when the names differ; any count or shape mismatch
        raises ``ValueError`` naming the layer and both shapes, before anything changes.
        """
        from .saving import load_weights

        load_weights(self, path)

    # -- configuration ---------------------------------------------------------------------------

    def get_config(self):
        """The architecture as JSON-serialisable data: the network's arguments and each layer's config."""
        return {
            "name": self.name,
            "input_shape": None if self.input_shape is None else list(self.input_shape),
            "seed": self.seed,
            "dtype": self.dtype.name,
            "trainable": self.trainable,
            "layers": [{"class_name": type(layer).__name__, "config": layer.get_config()}
                       for layer in self.layers],
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """Rebuild a network (fresh weights) from :meth:`get_config`'s output.

        A graph's config (``"class_name": "Model"``, from :meth:`Model.get_config`) rebuilds a
        :class:`~modularcnn.Model`, so code that rebuilds networks (model files, training workers)
        takes both.
        """
        if config.get("class_name") == "Model" and cls is Net:
            from .functional import Model  # noqa: PLC0415 - functional imports this module

            return Model.from_config(config, custom_objects=custom_objects)
        net = cls(input_shape=config.get("input_shape"), name=config.get("name"),
                  seed=config.get("seed"), dtype=config.get("dtype", "float32"))
        for entry in config.get("layers", []):
            layer_class = get_layer_class(entry["class_name"], custom_objects)
            net.add(layer_class.from_config(dict(entry["config"])))
        net.trainable = bool(config.get("trainable", True))
        return net

    def __repr__(self):
        return f"<Net name={self.name!r} layers={len(self.layers)} params={self.count_params():,}>"


#: Keras's name for a stack of layers: ``Sequential([Input((28, 28, 1)), Conv2D(32, 3), ...],
#: name="cnn")`` is a :class:`Net` (one class under two names, not a subclass).
Sequential = Net


def _is_layer_list(value):
    """Whether ``Net``'s first argument is Keras's layer list rather than an input shape."""
    if not isinstance(value, (list, tuple)):
        return False
    return not value or any(isinstance(item, (Layer, Net, SymbolicTensor, InputLayer)) for item in value)
