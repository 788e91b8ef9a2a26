"""The fuzz suite (issue 14): every public constructor, Net method, loader and CLI command gets generated
bad values, and only the library's documented exceptions may come out, within a memory and time bound,
with no weight changed when an error is raised.

The contract (README "Safety" and "Training", :mod:`modularcnn.errors`): bad input raises a
``ValueError`` -- the library's ``ArgumentError``/``ShapeError``/``DataError``/``ModelFileError`` or a
plain one raised by the library's own code, never one from deep inside NumPy or h5py. Paths add
``FileNotFoundError`` (missing), ``PermissionError`` (write-protected) and ``OSError`` naming the path
(a full disk). ``TypeError``, ``MemoryError``, ``OverflowError``, ``IndexError``, ``KeyError``,  or anything else is a finding, and so is a hang or a memory bomb: every example runs
under :func:`bounded` (an address-space limit a little above what the process already maps, and a
watchdog alarm).

Classes are enumerated from the package (``modularcnn.layers``, ``optimizers``, ``losses``, ...), so a
new class is fuzzed without touching this file; a public class the suite cannot classify fails
:func:`test_every_public_class_is_fuzzed_or_excused`. Each accepted value is then *used* (a layer is built
and run, an optimizer steps, a loss trains, a callback sees a fit...), because a bad value accepted by a
constructor usually breaks later.

The fault tests -- a SIGSTOPped worker, SIGKILL during worker start-up, a full disk on a small tmpfs --
live beside the code they test (tests/test_strategies.py, tests/test_hardening_files.py) and carry the
``fuzz`` marker, as do the damaged-file tests of tests/test_saving_fuzz.py, whose helpers this file
reuses: ``python -m pytest -m fuzz`` runs the whole suite.
"""

import contextlib
import functools
import gzip
import inspect
import io
import math
import os
import resource
import signal
import subprocess
import sys
import tempfile
import traceback
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import modularcnn
from modularcnn import (Input, Model, Net, activations, augment, callbacks, constraints, initializers,
                        layers, losses, metrics, optimizers, regularizers, schedules)
from modularcnn.saving import file_info
from tests import test_saving_fuzz as saving_fuzz

pytestmark = [pytest.mark.fuzz,
              pytest.mark.skipif(not sys.platform.startswith("linux"),
                                 reason="bounds use RLIMIT_AS and SIGALRM (Linux)")]

PACKAGE_DIR = str(Path(modularcnn.__file__).resolve().parent)

#: Fixed, reproducible runs: the same examples on every machine, no example database on disk. The time
#: bound is the watchdog in :func:`bounded` (a hypothesis deadline only measures an example after it
#: returns, so it cannot stop a hang, and it fails runs on a loaded CI machine).
def fuzz(max_examples):
    return settings(derandomize=True, database=None, deadline=None, print_blob=True,
                    max_examples=max_examples,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                           HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])

#: Memory an example may map above what the process maps already: far more than any tiny network here
#: needs, far less than a memory bomb (a 12 GiB weight, a 10**12-threshold metric) asks for.
MEMORY_HEADROOM = 1 << 30

#: Seconds an example may take before it counts as a hang (each takes milliseconds).
WATCHDOG_SECONDS = 30


class Hang(BaseException):
    """Raised by the watchdog; a BaseException so that no ``except Exception`` in the library eats it."""


def mapped_bytes():
    """The process's virtual memory size (VmSize), which RLIMIT_AS bounds."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


@contextlib.contextmanager
def bounded(seconds=WATCHDOG_SECONDS, headroom=MEMORY_HEADROOM):
    """Run the body with at most ``headroom`` more bytes mapped and ``seconds`` of wall time.

    A memory bomb then ends in MemoryError (a finding) instead of taking the CI machine down; a hang
    ends in :class:`Hang`. Warnings are not exceptions, so they are silenced.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = mapped_bytes() + headroom
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)

    def alarm(signum, frame):
        raise Hang(f"an example ran for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        with warnings.catch_warnings():
            # Progress bars, one-time advice, and NumPy's overflow warnings: a finite 1e308 learning
            # rate may well overflow float32 weights, which is arithmetic, not a crash.
            warnings.simplefilter("ignore")
            yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def raised_by_the_library(error):
    """True when the innermost frame that raised ``error`` is modularcnn's own code.

    A ValueError from NumPy's reshape or h5py's internals is the "deep NumPy traceback" the README
    promises never to show, even though it is a ValueError.
    """
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and str(Path(frames[-1].filename).resolve()).startswith(PACKAGE_DIR)


def documented(call, allowed=(ValueError,)):
    """Run ``call()`` under :func:`bounded`; return ``(True, error)`` if it raised an allowed error from
    the library's own code, ``(False, result)`` if it returned. Anything else propagates (a finding)."""
    try:
        with bounded():
            return False, call()
    except allowed as error:
        if not raised_by_the_library(error):
            raise AssertionError(f"{type(error).__name__} from outside modularcnn: {error}") from error
        return True, error


# --------------------------------------------------------------------------------------------------
# Bad values
# --------------------------------------------------------------------------------------------------

#: Values no argument means: wrong types, non-finite and out-of-range numbers, sizes past the library's
#: bound, NumPy scalars, nested and empty containers.
BAD_VALUES = [
    None, float("nan"), float("inf"), float("-inf"), -1, 0, -10**12, 10**12, 2**63, 2**70, 1e308,
    -1e-300, 1.5, 2.7, True, False, "abc", "", "0.5", "relu", "same", b"x", 1j, object(), {}, [], (),
    [None], (1, 2), (0, 0), (-1, 3), ((1,), (2,)), ((1, 2), (3, 4)), (1.5, 2), ("a",), (10**12, 10**12),
    np.int64(-3), np.int64(10**12), np.uint8(0), np.float32("nan"), np.float64(np.inf), np.bool_(True),
    np.array([1, 2]), np.array(7), np.zeros((2, 2)), {"class_name": "Bogus", "config": {}},
    {"class_name": "Dense", "config": {"units": -1}}, lambda *args, **kwargs: None,
]


def bad_values():
    """One bad value: from the fixed list, or small/edge integers and any float."""
    return st.one_of(
        st.sampled_from(BAD_VALUES),
        st.integers(-3, 40),
        st.floats(allow_nan=True, allow_infinity=True),
        st.tuples(st.integers(-2, 9), st.integers(-2, 9)),
        st.text(max_size=4),
    )


# --------------------------------------------------------------------------------------------------
# Constructors, enumerated from the package
# --------------------------------------------------------------------------------------------------

#: Values for required arguments that make a working instance, by argument name; a new class whose
#: required argument is not here fails test_every_constructor_has_a_working_instance.
def _valid_arguments(folder):
    return {
        "units": 3, "filters": 2, "kernel_size": 3, "rate": 0.25, "target_shape": (-1,),
        "stddev": 0.1, "scale": 0.5, "dims": (1,), "axes": 1, "shape": (4,), "groups": 2,
        "activation": "relu", "layers": [layers.Dense(2)],
        "fn": lambda y_true, y_pred: float(np.mean((y_true - y_pred) ** 2)),
        "gradient": lambda y_true, y_pred: 2 * (y_pred - y_true) / y_pred.size,
        "penalty": lambda w: 0.01 * float(np.sum(w * w)),
        "forward": np.tanh, "derivative": lambda x: 1 - np.tanh(x) ** 2,
        "schedule": lambda epoch, lr: lr, "filename": os.path.join(folder, "log.csv"),
        "filepath": os.path.join(folder, "checkpoint.h5"),
        "backup_dir": os.path.join(folder, "backup"),
        "initial_learning_rate": 0.1, "decay_steps": 10, "decay_rate": 0.5, "step_size": 2,
        "boundaries": [5], "values": [0.1, 0.01], "first_decay_steps": 10,
        "model": _inner_net(),
    }


def _inner_net():
    inner = Net(input_shape=(4,), seed=0)
    inner.add(layers.Dense(4))
    return inner


#: Base class of each fuzzed family, the modules whose public classes belong to it, and how an
#: instance is used once constructed (in the use functions below).
FAMILIES = {
    "layer": (layers.Layer, [layers]),
    "optimizer": (optimizers.Optimizer, [optimizers]),
    "loss": (losses.Loss, [losses]),
    "initializer": (initializers.Initializer, [initializers]),
    "regularizer": (regularizers.Regularizer, [regularizers]),
    "constraint": (constraints.Constraint, [constraints]),
    "callback": (callbacks.Callback, [callbacks]),
    "schedule": (schedules.LearningRateSchedule, [schedules]),
    "metric": (metrics.StatefulMetric, [metrics]),
    "activation": (activations.ActivationFunction, [activations]),
    "augmenter": (augment.ImageAugmenter, [augment]),
}

#: Public classes that are not fuzzed as constructors, and why.
EXCUSED = {
    "Layer": "abstract base", "ActivatedLayer": "abstract base", "Optimizer": "abstract base",
    "Loss": "abstract base", "Initializer": "abstract base", "Regularizer": "abstract base",
    "Constraint": "abstract base", "Callback": "abstract base (no arguments)",
    "LearningRateSchedule": "abstract base", "StatefulMetric": "abstract base",
    "ActivationFunction": "abstract base", "Configurable": "mix-in of every configurable class",
    "Catalog": "the name registries, not user-constructed", "Workspace": "optimizer scratch buffers",
    "CallbackList": "built by fit from the callbacks argument (fuzzed there)",
    "ActivityTally": "built by the training loop", "Metric": "built by compile from metric names",
    "InputLayer": "the placeholder Input() makes (fuzzed with the networks)",
    "CustomLoss": "built by losses.custom (its functions are the user's)",
    "Custom": "wrappers of user functions (regularizers.Custom, activations.Custom)",
}


def public_classes(module):
    names = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
    for name in names:
        obj = getattr(module, name, None)
        if (inspect.isclass(obj) and obj.__module__.startswith("modularcnn")
                and not issubclass(obj, BaseException)):
            yield name, obj


def fuzzed_classes():
    """``[(family, name, class)]`` for every public class of the families' modules, once each."""
    found, seen = [], set()
    for family, (base, modules) in FAMILIES.items():
        for module in modules:
            for name, cls in public_classes(module):
                if cls in seen or name in EXCUSED or not issubclass(cls, base):
                    continue
                seen.add(cls)
                found.append((family, name, cls))
    return found


CLASSES = fuzzed_classes()


def required_arguments(cls):
    """Names of the arguments a call must give; a ``*args`` pass-through (Conv2D's) leads to the
    parent's (a ``**kwargs``-only one does not: the subclass fills the parent's required ones)."""
    required = []
    for klass in inspect.getmro(cls):
        if "__init__" not in vars(klass):
            continue
        parameters = list(inspect.signature(klass.__init__).parameters.values())[1:]
        required += [p.name for p in parameters if p.default is p.empty
                     and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name not in required]
        if not any(p.kind is p.VAR_POSITIONAL for p in parameters):
            break
    return required


def public_arguments(cls, instance):
    """The arguments a user can pass: the class's own signature and its config's keys ("config is
    the constructor", so a ``**kwargs`` pass-through such as Conv2D's is covered)."""
    names = [p.name for p in inspect.signature(cls).parameters.values()
             if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if hasattr(instance, "get_config"):
        names += [k for k in instance.get_config() if k not in names]
    return names


@pytest.fixture(scope="module")
def folder():
    """A scratch folder, also the working directory: a fuzzed file name such as "abc" lands here."""
    with tempfile.TemporaryDirectory() as path:
        previous = os.getcwd()
        os.chdir(path)
        try:
            yield path
        finally:
            os.chdir(previous)


_base_cache = {}


def base_arguments(cls, folder):
    """The arguments of a working instance: the required ones from _valid_arguments, or, when that
    instance does not work (``Dense()`` needs units, ``GroupNormalization()``'s 32 groups fit no small
    input), those and one more argument of the signature that _valid_arguments knows."""
    valid = _valid_arguments(folder)
    if cls not in _base_cache:
        required = [name for name in required_arguments(cls) if name in valid]
        known = [p for p in inspect.signature(cls).parameters if p in valid and p not in required]
        family = next(f for f, _, c in CLASSES if c is cls)
        candidates = [required] + [required + [name] for name in known] + [required + known]
        _base_cache[cls] = next((names for names in candidates if _works(family, cls, names, folder)),
                                required)
    return {name: valid[name] for name in _base_cache[cls]}


def _works(family, cls, names, folder):
    def make():  # fresh arguments each time: a layer list can be in one Residual only
        valid = _valid_arguments(folder)
        return cls(**{name: valid[name] for name in names})

    try:
        with bounded():
            make()
    except ValueError:
        return False
    return family != "layer" or any(_runs_on(make, shape, is_merge(cls)) for shape in LAYER_INPUTS)


# How an instance of each family is used once constructed: each builds a tiny network and runs it.

def tiny_data(n=6, shape=(4,), classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n,) + shape).astype(np.float32), rng.integers(0, classes, n)


def dense_net(seed=0, **dense_options):
    dense_options.setdefault("activation", "softmax")
    net = Net(input_shape=(4,), seed=seed)
    net.add(layers.Dense(3, **dense_options))
    return net


def train_briefly(net, one_hot=False, **compile_options):
    compile_options.setdefault("optimizer", "sgd")
    net.compile(**compile_options)
    x, y = tiny_data()
    if one_hot:
        y = np.eye(3, dtype=np.float32)[y]
    net.train_on_batch(x, y)
    return net.evaluate(x, y)


#: Per-sample input shapes tried, in order, for a layer: the first a default instance runs on is used.
LAYER_INPUTS = [(6, 6, 2), (6, 2), (4, 4, 4, 2), (4,)]
_layer_input_cache = {}


def _runs_on(layer_factory, shape, merge):
    try:
        with bounded():
            run_layer(layer_factory(), shape, merge)
        return True
    except ValueError:
        return False


def is_merge(cls):
    return issubclass(cls, (layers.Add, layers.Subtract, layers.Multiply, layers.Average,
                            layers.Maximum, layers.Minimum, layers.Concatenate, layers.Dot))


def run_layer(layer, shape, merge):
    """Build ``layer`` on inputs of ``shape``, predict, take one training step, round-trip its config."""
    if merge:
        a, b = Input(shape), Input(shape)
        outputs = layer([a, b])
        net = Model([a, b], outputs, seed=0)
        x = [np.ones((2,) + shape, np.float32), np.full((2,) + shape, 0.5, np.float32)]
    else:
        net = Net(input_shape=shape, seed=0)
        net.add(layer)
        x = np.random.default_rng(0).standard_normal((2,) + shape).astype(np.float32)
    predictions = net.predict(x)
    net.compile(optimizer="sgd", loss="mse", metrics=[])
    net.train_on_batch(x, np.zeros_like(predictions))
    type(layer).from_config(layer.get_config())


def layer_input(cls, folder):
    if cls not in _layer_input_cache:
        merge = is_merge(cls)
        shape = next((s for s in LAYER_INPUTS
                      if _runs_on(lambda: cls(**base_arguments(cls, folder)), s, merge)), None)
        _layer_input_cache[cls] = shape
    return _layer_input_cache[cls]


def use(family, cls, instance, folder):
    """Put ``instance`` to work the way a user would."""
    if family == "layer":
        shape = layer_input(cls, folder)
        run_layer(instance, shape or (4,), is_merge(cls))
    elif family == "optimizer":
        train_briefly(dense_net(), optimizer=instance)
    elif family == "loss":
        sparse = isinstance(instance, losses.SparseCategoricalCrossentropy)
        train_briefly(dense_net(), loss=instance, metrics=[], one_hot=not sparse)
    elif family == "initializer":
        train_briefly(dense_net(kernel_initializer=instance, bias_initializer=instance))
    elif family == "regularizer":
        train_briefly(dense_net(kernel_regularizer=instance, activity_regularizer=instance))
    elif family == "constraint":
        train_briefly(dense_net(kernel_constraint=instance))
    elif family == "callback":
        net = dense_net()
        net.compile(optimizer="sgd")
        x, y = tiny_data(8)
        net.fit(x, y, epochs=2, batch_size=4, validation_split=0.25, verbose=0, workers=1,
                callbacks=[instance])
    elif family == "schedule":
        instance(0), instance(7)
        train_briefly(dense_net(), optimizer=optimizers.SGD(learning_rate=instance))
    elif family == "metric":
        train_briefly(dense_net(), metrics=[instance])
    elif family == "activation":
        train_briefly(dense_net(activation=instance), loss="mse", metrics=[], one_hot=True)
    elif family == "augmenter":
        net = Net(input_shape=(6, 6, 1), seed=0)
        net.add(layers.Flatten())
        net.add(layers.Dense(3, activation="softmax"))
        net.compile(optimizer="sgd")
        rng = np.random.default_rng(0)
        net.fit(rng.random((4, 6, 6, 1), np.float32), np.arange(4) % 3, epochs=1, batch_size=2,
                verbose=0, workers=1, augment=instance)
    else:
        raise AssertionError(family)


def test_every_public_class_is_fuzzed_or_excused():
    """A new public class is either fuzzed (it belongs to a family) or named in EXCUSED with a reason."""
    fuzzed = {cls for _, _, cls in CLASSES}
    modules = [m for _, ms in FAMILIES.values() for m in ms]
    stray = sorted({name for m in modules for name, cls in public_classes(m)
                    if cls not in fuzzed and name not in EXCUSED})
    assert not stray, f"public classes neither fuzzed nor excused: {stray}"
    assert len(CLASSES) > 100


@pytest.mark.parametrize("family, name, cls", CLASSES, ids=[name for _, name, _ in CLASSES])
def test_every_constructor_has_a_working_instance(family, name, cls, folder):
    """The required-argument table makes a working instance of every class, which is used as a user
    would; the fuzzing below then changes one argument at a time from there."""
    missing = [a for a in required_arguments(cls) if a not in _valid_arguments(folder)]
    assert not missing, f"{name}: add a valid value for {missing} to _valid_arguments"
    instance = cls(**base_arguments(cls, folder))
    if family == "layer":
        assert layer_input(cls, folder) is not None, f"{name} runs on none of {LAYER_INPUTS}"
    with bounded():
        use(family, cls, instance, folder)


_arguments_cache = []


def constructor_arguments():
    """``[(family, name, class, argument)]`` for every public argument of every fuzzed class."""
    if not _arguments_cache:
        with tempfile.TemporaryDirectory() as scratch:
            for family, name, cls in CLASSES:
                instance = cls(**base_arguments(cls, scratch))
                _arguments_cache.extend((family, name, cls, argument)
                                        for argument in public_arguments(cls, instance))
    return _arguments_cache


@st.composite
def constructor_calls(draw):
    family, name, cls, argument = draw(st.sampled_from(constructor_arguments()))
    return family, name, cls, argument, draw(bad_values())


@fuzz(450)
@given(call=constructor_calls())
def test_constructors_refuse_bad_values_with_value_error(call, folder):
    family, name, cls, argument, value = call
    arguments = {**base_arguments(cls, folder), argument: value}
    raised, outcome = documented(lambda: cls(**arguments))
    if not raised:
        documented(lambda: use(family, cls, outcome, folder))


#: What the constructor fuzzing found (each raised TypeError, OverflowError, AttributeError or
#: MemoryError, hung, or let NumPy's ValueError through), pinned so that each stays fixed.
CONSTRUCTOR_FINDINGS = [
    (lambda: activations.ReLU(max_value="1"), "ReLU: max_value"),
    (lambda: activations.LeakyReLU(alpha=None), "LeakyReLU: alpha"),
    (lambda: activations.ELU(alpha=[1]), "ELU: alpha"),
    (lambda: activations.Softmax(axis=2**63), "softmax: axis"),
    (lambda: layers.LeakyReLU(negative_slope=None), "LeakyReLU: negative_slope"),
    (lambda: layers.ELU(alpha=None), "ELU: alpha"),
    (lambda: losses.CategoricalCrossentropy(label_smoothing=None), "label_smoothing"),
    (lambda: losses.BinaryCrossentropy(from_logits="no"), "from_logits"),
    (lambda: losses.Huber(delta=None), "Huber: delta"),
    (lambda: initializers.Constant(None), "Constant: value"),
    (lambda: initializers.RandomNormal(stddev=-1.0), "RandomNormal: stddev"),  # NumPy's "scale < 0"
    (lambda: initializers.RandomNormal(mean=None), "RandomNormal: mean"),
    (lambda: initializers.RandomUniform(limit=float("nan")), "RandomUniform: limit"),
    (lambda: initializers.RandomUniform(limit=1e308), "RandomUniform: limit"),  # range overflows
    (lambda: initializers.VarianceScaling(scale=None), "VarianceScaling: scale"),
    (lambda: augment.ImageAugmenter(rotation_range=2**70), "rotation_range"),
    (lambda: augment.ImageAugmenter(width_shift_range=1e308), "width_shift_range"),
    (lambda: augment.ImageAugmenter(fill_value=None), "fill_value"),
    (lambda: augment.ImageAugmenter(seed=float("nan")), "seed"),
    (lambda: augment.ImageAugmenter(zoom_range=2**70), "zoom_range"),
    (lambda: augment.ImageAugmenter(horizontal_flip="no"), "horizontal_flip"),
    (lambda: schedules.PiecewiseConstantDecay(boundaries=None, values=[0.1]), "boundaries"),
    (lambda: metrics.AUC(num_thresholds=10**12), "AUC: num_thresholds"),  # MemoryError or a hang
    (lambda: constraints.MaxNorm(axis=2**63), "MaxNorm: axis"),
    (lambda: constraints.MaxNorm(axis=(0, 0)), "MaxNorm: axis"),  # NumPy's "duplicate value"
    (lambda: callbacks.CSVLogger(None), "CSVLogger: filename"),
    (lambda: callbacks.CSVLogger("log.csv", separator=None), "CSVLogger: separator"),
    (lambda: callbacks.ModelCheckpoint(b"m.h5"), "ModelCheckpoint: filepath"),
    (lambda: callbacks.ProgressLogger(stream=float("nan")), "ProgressLogger: stream"),
    (lambda: layers.Conv2D(2, strides=2**63), "Conv2D: stride"),  # OverflowError in as_strided
    (lambda: layers.Conv1D(2, padding=10**12), "Conv1D: padding"),  # a 29 TiB output
]


@pytest.mark.parametrize("make, words", CONSTRUCTOR_FINDINGS)
def test_constructor_findings_stay_fixed(make, words):
    with pytest.raises(ValueError, match=words) as caught:
        with bounded():
            make()
    assert raised_by_the_library(caught.value)


def test_an_output_too_large_for_one_sample_is_refused_when_built():
    """UpSampling2D(size=10**5) is a valid layer whose output on 6x6 images would hold 3.6e11
    values per sample: refused when the network builds it, the network unchanged."""
    net = Net(input_shape=(6, 6, 2), seed=0)
    with pytest.raises(ValueError, match="MAX_ARRAY_ELEMENTS"), bounded():
        net.add(layers.UpSampling2D(size=10**5))
    assert net.layers == []


def test_a_schedule_returning_none_is_named():
    net = dense_net()
    net.compile(optimizer="sgd")
    x, y = tiny_data()
    scheduler = callbacks.LearningRateScheduler(lambda epoch, lr: None)
    with pytest.raises(ValueError, match="schedule returned None"), bounded():
        net.fit(x, y, epochs=1, verbose=0, workers=1, callbacks=[scheduler])


# --------------------------------------------------------------------------------------------------
# Net methods: bad data and arguments, and no weight changed by a refused call
# --------------------------------------------------------------------------------------------------

def trained_net():
    """A tiny compiled network that has taken one Adam step (so its optimizer has state)."""
    net = Net(input_shape=(4,), seed=0)
    net.add(layers.Dense(5, activation="relu"))
    net.add(layers.BatchNormalization())
    net.add(layers.Dense(3, activation="softmax"))
    net.compile(optimizer="adam", loss="cross_entropy", metrics=["accuracy"])
    x, y = tiny_data()
    net.train_on_batch(x, y)
    return net


def trained_model():
    """The same network as a one-input graph Model (its own fit/evaluate/predict paths)."""
    inputs = Input((4,))
    hidden = layers.BatchNormalization()(layers.Dense(5, activation="relu")(inputs))
    model = Model(inputs, layers.Dense(3, activation="softmax")(hidden), seed=0)
    model.compile(optimizer="adam", loss="cross_entropy", metrics=["accuracy"])
    x, y = tiny_data()
    model.train_on_batch(x, y)
    return model


NETWORKS = {"sequential": trained_net, "graph": trained_model}


def state_bytes(net):
    """Every weight (moving statistics included) and the optimizer's state, as bytes."""
    weights = [np.asarray(w).tobytes() for w in net.get_weights()]
    optimizer = getattr(net, "optimizer", None)
    state = repr(optimizer.get_state()) if optimizer is not None and hasattr(optimizer, "get_state") \
        else None
    return weights, state


def bad_arrays():
    """Training or prediction data that is wrong: shapes, dtypes, non-finite values, containers."""
    specials = st.sampled_from([0.0, 1.0, -1.0, 2.0, 3.0, 1.5, float("nan"), float("inf"),
                                -float("inf"), 1e30, -7.0, 255.0])
    dtypes = st.sampled_from(["float32", "float64", "int64", "uint8", "int8", "bool", "complex64",
                              "float16", "object", "U1"])

    @st.composite
    def arrays(draw):
        shape = tuple(draw(st.lists(st.integers(0, 6), min_size=0, max_size=3)))
        dtype = draw(dtypes)
        fill = draw(specials)
        if dtype == "U1":
            return np.full(shape, "a")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            array = np.full(shape, fill).astype(dtype) if dtype != "object" \
                else np.full(shape, fill, dtype=object)
        if array.size and draw(st.booleans()):  # mostly ordinary values with one special one
            ordinary = np.random.default_rng(0).standard_normal(array.shape)
            flat = array.reshape(-1)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                flat[1:] = ordinary.reshape(-1)[1:].astype(array.dtype)
        return array

    return st.one_of(
        arrays(),
        st.sampled_from([
            None, "abc", 3, 2.5, [], [[1, 2, 3, 4]], [[1, 2], [3]], {"x": 1}, [None] * 4,
            np.zeros((6, 5), np.float32), np.zeros((6, 4, 1), np.float32), np.zeros((0, 4)),
            np.zeros((5, 4), np.float32), np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1, 2]] * np.nan,
            np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1, 2]] * 2, np.full((6, 3), 1 / 3) - 1,
            np.arange(6) + 1, np.arange(6) * 1.5, -np.arange(6), np.arange(6, dtype=np.uint8),
            np.zeros((6, 4), np.float32)[:, ::2], np.ones((6, 4), np.float32).T,
            (np.zeros((6, 4), np.float32), np.arange(6) % 3), [np.zeros((6, 4), np.float32)],
        ]),
        bad_values(),
    )


#: Counts whose huge values would legitimately run for ever (10**12 epochs): fuzzed with the other bad
#: values only. ``workers`` of 2..64 would start that many processes: fuzzed with the others.
HUGE = {10**12, 2**63, 2**70, np.int64(10**12)}


def allowed_value(argument, value):
    if argument in ("epochs", "steps_per_epoch", "steps", "validation_steps", "batches") and \
            _is_int(value) and int(value) > 1000:
        return False
    if argument == "workers" and _is_int(value) and 2 <= int(value) <= 64:
        return False
    return True


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def valid_method_arguments(folder):
    """A valid call of each fuzzed method; one argument at a time is replaced by a bad value."""
    x, y = tiny_data(8)
    return {
        "fit": dict(x=x, y=y, epochs=1, batch_size=4, validation_split=0.0, validation_data=None,
                    shuffle=True, callbacks=None, verbose=0, initial_epoch=0, augment=None,
                    workers=1, strategy=None, sample_weight=None, class_weight=None,
                    steps_per_epoch=None, validation_steps=None, validation_batch_size=None),
        "evaluate": dict(x=x, y=y, batch_size=4, verbose=0, sample_weight=None, steps=None,
                         callbacks=None, return_dict=False),
        "predict": dict(x=x, batch_size=4, verbose=0, steps=None, callbacks=None, out=None),
        "predict_classes": dict(x=x, batch_size=None),
        "train_on_batch": dict(x=x, y=y, sample_weight=None, class_weight=None),
        "test_on_batch": dict(x=x, y=y, sample_weight=None),
        "predict_on_batch": dict(x=x),
        "forward": dict(x=x, training=False),
        "compile": dict(optimizer="adam", loss="cross_entropy", metrics=("accuracy",)),
        "summary": dict(line_length=None, positions=None, print_fn=lambda text: None,
                        expand_nested=False, show_trainable=None, show_plan=False),
        "set_weights": dict(weights=trained_net().get_weights()),
        "get_layer": dict(name=None, index=0),
        "add": dict(layer=layers.Dense(2)),
        "save": dict(path=os.path.join(folder, "saved.h5")),
        "save_weights": dict(path=os.path.join(folder, "weights.h5")),
        "load_weights": dict(path=os.path.join(folder, "reference.weights.h5")),
        "to_json": dict(),
    }


DATA_ARGUMENTS = {"x", "y", "sample_weight", "validation_data", "weights", "out"}

#: Besides ValueError: what a path may raise, as documented (README "Safety").
PATH_ERRORS = (ValueError, FileNotFoundError, PermissionError, IsADirectoryError)


@st.composite
def method_calls(draw):
    network = draw(st.sampled_from(sorted(NETWORKS)))
    method = draw(st.sampled_from(sorted(valid_method_arguments(tempfile.gettempdir()))))
    names = sorted(valid_method_arguments(tempfile.gettempdir())[method])
    if not names:
        return network, method, None, None
    argument = draw(st.sampled_from(names))
    values = bad_arrays() if argument in DATA_ARGUMENTS else st.one_of(bad_values(), bad_arrays())
    value = draw(values.filter(lambda v: allowed_value(argument, v)))
    return network, method, argument, value


@pytest.fixture(scope="module")
def reference_weights(folder):
    trained_net().save_weights(os.path.join(folder, "reference.weights.h5"))


@fuzz(300)
@given(call=method_calls())
def test_net_methods_refuse_bad_values_and_keep_every_weight(call, folder, reference_weights):
    network, method, argument, value = call
    net = NETWORKS[network]()
    arguments = valid_method_arguments(folder)[method]
    if argument is not None:
        arguments[argument] = value
    before = state_bytes(net)
    allowed = PATH_ERRORS if method in ("save", "save_weights", "load_weights") else (ValueError,)
    raised, _ = documented(lambda: getattr(net, method)(**arguments), allowed)
    if raised:
        assert state_bytes(net) == before, f"{method}({argument}={value!r}) raised and changed state"


def test_net_method_findings_stay_fixed(folder):
    """What the Net-method fuzzing found (TypeError, MemoryError, OverflowError, NumPy's AxisError, a
    refused compile that had already replaced the optimizer), pinned."""
    net, model = trained_net(), trained_model()
    before = state_bytes(net), state_bytes(model)
    for call, words in [
        (lambda: net.compile(loss=None), "loss"),
        (lambda: net.compile(metrics=float("nan")), "metrics"),
        (lambda: net.summary(print_fn=None), "print_fn"),
        (lambda: model.summary(print_fn=None), "print_fn"),
        (lambda: model.compile(metrics=float("nan")), "metrics"),
        (lambda: net.summary(line_length=10**12), "line_length"),
        (lambda: net.summary(positions=[10**12] * 4), "positions"),
        (lambda: net.set_weights(np.array(0.0)), "weights"),
        (lambda: net.set_weights([w.astype(np.complex64) for w in net.get_weights()]), "dtype"),
        (lambda: net.set_weights([[[1.0], [1.0, 2.0]]] + net.get_weights()[1:]), "ragged"),
        (lambda: net.save(None), "path"),
        (lambda: net.save_weights(None), "path"),
        (lambda: net.load_weights(None), "path"),
        (lambda: modularcnn.load_model(None), "path"),
        (lambda: file_info(b"m.h5"), "path"),
        (lambda: Net(input_shape=(4,)).add(layers.Dense(3, activation=activations.Softmax(axis=-3))),
         "axis"),
    ]:
        with pytest.raises(ValueError, match=words) as caught, bounded():
            call()
        assert raised_by_the_library(caught.value)
        assert (state_bytes(net), state_bytes(model)) == before


def test_a_layer_refused_by_its_own_build_stays_unbuilt():
    """A layer whose build refuses its input (a softmax over an axis the output lacks) is left
    unbuilt, so calling it again gives the same clear error, not a KeyError for a missing kernel."""
    layer = layers.Dense(3, activation=activations.Softmax(axis=2))
    for _ in range(2):
        with pytest.raises(ValueError, match="axis"):
            layer(np.zeros((2, 4), np.float32))
    assert not layer.built and layer.params == {}


# --------------------------------------------------------------------------------------------------
# Loaders: model files (test_saving_fuzz's mutations, now bounded, plus declared-size bombs and Keras
# archives), IDX and CSV datasets
# --------------------------------------------------------------------------------------------------

#: Declared dataset shapes of a model-file memory bomb (chunked and compressed, the file stays small).
BOMB_SHAPES = [(32768, 32768), (100000, 100000), (2**31,), (1,) * 32, (2**16,) * 4]


@st.composite
def damaged_model_files(draw):
    """``(kind, argument)`` for :func:`tests.test_saving_fuzz.apply`, or a declared-size bomb."""
    if draw(st.integers(0, 3)) == 0:
        return "bomb", (draw(st.sampled_from(saving_fuzz.reference()["datasets"])),
                        draw(st.sampled_from(BOMB_SHAPES)))
    return draw(saving_fuzz.mutations())


def write_damaged(path, kind, argument):
    if kind != "bomb":
        saving_fuzz.apply(path, kind, argument)
        return
    name, shape = argument
    with open(path, "wb") as handle:
        handle.write(saving_fuzz.reference()["data"])
    with h5py.File(path, "r+") as f:
        dtype = f[name].dtype
        del f[name]
        # Nothing is written: HDF5 allocates chunks lazily, so the file stays a few KB.
        f.create_dataset(name, shape=shape, dtype=dtype, chunks=(1,) * (len(shape) - 1) + (min(shape[-1], 64),),
                         compression="gzip")


@fuzz(120)
@given(damage=damaged_model_files())
def test_damaged_model_files_load_exactly_or_raise_model_file_error_within_bounds(damage, folder):
    """tests/test_saving_fuzz.py's contract (exactly the saved network, or ModelFileError), for
    load_model, load_weights and file_info, under the memory and time bound."""
    kind, argument = damage
    path = os.path.join(folder, "damaged.h5")
    write_damaged(path, kind, argument)
    with bounded():
        saving_fuzz.check_load(path)
    documented(lambda: file_info(path), (modularcnn.ModelFileError,))


@functools.cache
def keras_archive():
    """A .keras archive of a small network, its bytes, and its predictions."""
    net = saving_fuzz.build_net(seed=0)
    x = saving_fuzz.reference()["x"]
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, "m.keras")
        net.save(path)
        with open(path, "rb") as handle:
            return handle.read(), net.predict(x)


@fuzz(60)
@given(cut=st.integers(0, 10**6), flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 7)),
                                                 max_size=3))
def test_damaged_keras_archives_load_exactly_or_raise_model_file_error(cut, flips, folder):
    data, predictions = keras_archive()
    damaged = bytearray(data[:cut % (len(data) + 1)] if cut % 3 == 0 else data)
    for offset, bit in flips:
        if damaged:
            damaged[offset % len(damaged)] ^= 1 << bit
    path = os.path.join(folder, "damaged.keras")
    with open(path, "wb") as handle:
        handle.write(bytes(damaged))
    raised, net = documented(lambda: modularcnn.load_model(path), (modularcnn.ModelFileError,))
    if not raised:
        assert net.predict(saving_fuzz.reference()["x"]).tobytes() == predictions.tobytes()


@fuzz(60)
@given(data=st.one_of(st.binary(max_size=64),
                      st.binary(max_size=64).map(lambda b: b"\x89HDF\r\n\x1a\n" + b),
                      st.binary(max_size=64).map(lambda b: b"PK\x03\x04" + b)))
def test_junk_bytes_are_model_file_errors(data, folder):
    path = os.path.join(folder, "junk.h5")
    with open(path, "wb") as handle:
        handle.write(data)
    for load in (modularcnn.load_model, file_info, trained_net().load_weights):
        documented(lambda: load(path), (modularcnn.ModelFileError,))


@st.composite
def idx_files(draw):
    """IDX bytes: a valid-looking or broken header (dtype code, up to 255 dimensions, sizes up to
    2**32 - 1) and a payload of some length."""
    zero = draw(st.sampled_from([b"\x00\x00", b"\x00\x01", b"\xff\xff"]))
    code = draw(st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x00, 0x07, 0xFF]))
    ndim = draw(st.one_of(st.integers(0, 4), st.just(255)))
    dims = draw(st.lists(st.one_of(st.integers(0, 5), st.sampled_from([65536, 2**31, 2**32 - 1])),
                         min_size=min(ndim, 6), max_size=min(ndim, 6)))
    header = zero + bytes([code, ndim]) + b"".join(d.to_bytes(4, "big") for d in dims)
    payload = draw(st.binary(max_size=80))
    data = header + payload
    if draw(st.booleans()):
        data = gzip.compress(data)
        if draw(st.booleans()):
            data = data[:draw(st.integers(0, len(data)))]
    return data


@fuzz(120)
@given(data=idx_files())
def test_idx_loader_refuses_broken_files_with_dataset_error(data, folder):
    path = os.path.join(folder, "data.idx")
    with open(path, "wb") as handle:
        handle.write(data)
    from modularcnn.datasets import DatasetError, load_idx, parse_idx
    raised, array = documented(lambda: load_idx(path), (DatasetError,))
    if not data.startswith(b"\x1f\x8b"):
        raised_bytes, array_bytes = documented(lambda: parse_idx(data), (DatasetError,))
        assert raised_bytes == raised
        if not raised:
            assert array.tobytes() == array_bytes.tobytes()


CSV_CELLS = st.sampled_from(["0", "1", "255", "256", "-1", "1.5", "nan", "inf", "", " ", "abc",
                             "1e400", "99999999999999999999999", "0x10", '"3"', "7"])


@st.composite
def csv_calls(draw):
    rows = draw(st.lists(st.lists(CSV_CELLS, min_size=0, max_size=5), min_size=0, max_size=4))
    separator = draw(st.sampled_from([",", ";"]))
    text = "\n".join(separator.join(row) for row in rows)
    if draw(st.booleans()):
        text = "label,p1,p2,p3\n" + text
    arguments = {}
    for name, values in (("label_column", st.one_of(st.integers(-5, 5), bad_values())),
                         ("image_shape", st.one_of(st.just(None), st.just((2, 2)), bad_values())),
                         ("header", st.sampled_from(["infer", True, False, "yes", None, 1])),
                         ("dtype", st.sampled_from([np.uint8, "float32", "int8", "bogus", None, 3,
                                                    "U3", object]))):
        if draw(st.booleans()):
            arguments[name] = draw(values)
    return text.encode("utf-8") if draw(st.integers(0, 9)) else b"\xff\xfe\x00garbage", arguments


@fuzz(150)
@given(call=csv_calls())
def test_load_csv_refuses_bad_files_and_arguments_with_value_error(call, folder):
    from modularcnn.datasets import load_csv
    data, arguments = call
    path = os.path.join(folder, "data.csv")
    with open(path, "wb") as handle:
        handle.write(data)
    documented(lambda: load_csv(path, **arguments))


@fuzz(30)
@given(path=st.one_of(bad_values(), st.sampled_from(["no/such/folder", "."])))
def test_dataset_loaders_refuse_a_bad_path(path, folder):
    from modularcnn.datasets import cifar10, mnist
    for loader in (mnist.load_data, cifar10.load_data):
        documented(lambda: loader(path=path), (ValueError, FileNotFoundError))


# --------------------------------------------------------------------------------------------------
# The command line: in-process for many generated argument lists, as subprocesses for a few
# --------------------------------------------------------------------------------------------------

CLI_BAD_WORDS = st.sampled_from(["-1", "0", "1.5", "nan", "inf", "abc", "", "10000000000000",
                                 "1e400", "--", "-", "None", "/", "/dev/null", "\x7f"])


def cli_files(folder):
    """A small saved model (4x4x1 images, 3 classes) and a garbage file, made once."""
    model = os.path.join(folder, "cli_model.h5")
    if not os.path.exists(model):
        net = Net(input_shape=(4, 4, 1), seed=0)
        net.add(layers.Flatten())
        net.add(layers.Dense(3, activation="softmax"))
        net.save(model)
        with open(os.path.join(folder, "garbage.h5"), "wb") as handle:
            handle.write(b"\x89HDF\r\n\x1a\n garbage")
    return model, os.path.join(folder, "garbage.h5")


@st.composite
def cli_arguments(draw, folder):
    model, garbage = cli_files(folder)
    path = st.sampled_from([model, garbage, os.path.join(folder, "absent.h5"), folder, "/dev/null",
                            ""])
    command = draw(st.sampled_from(["train", "evaluate", "predict", "summary", "convert", "export",
                                    "bogus"]))
    if command == "train":
        options = {"--epochs": "1", "--num-examples": "16", "--test-examples": "16",
                   "--batch-size": "8", "--workers": "1", "--val-examples": "0"}
        option = draw(st.sampled_from(sorted(options) + ["--lr", "--lr-decay", "--optimizer",
                                                         "--model", "--dataset", "--augment",
                                                         "--seed", "--val-split", "--distributed",
                                                         "--save"]))
        word = draw(CLI_BAD_WORDS.filter(
            lambda w: not (option in ("--workers",) and w.isdigit())))
        options[option] = word
        if option == "--val-split":
            del options["--val-examples"]
        return ["train"] + [item for pair in options.items() for item in pair]
    if command in ("evaluate", "summary"):
        extra = ["--num-examples", draw(CLI_BAD_WORDS)] if draw(st.booleans()) and \
            command == "evaluate" else []
        return [command, draw(path)] + extra
    if command == "predict":
        return ["predict", draw(path), draw(st.sampled_from([garbage, model, folder, "x.npy", ""]))]
    if command in ("convert", "export"):
        extra = ["--opset", draw(CLI_BAD_WORDS)] if command == "export" and draw(st.booleans()) \
            else []
        return [command, draw(path), draw(st.sampled_from(["", folder, "/dev/null", "out.bogus"]))] \
            + extra
    return [command] + draw(st.lists(CLI_BAD_WORDS, max_size=2))


def run_cli(argv):
    """``modularcnn.cli.main(argv)`` in this process: (exit status, stdout, stderr). An exception
    out of main is the raw traceback a user would see: it propagates, a finding."""
    from modularcnn import cli
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), bounded():
        try:
            status = cli.main(argv)
        except SystemExit as exit:  # argparse: usage and the error on stderr, status 2
            status = exit.code
    return status, out.getvalue(), err.getvalue()


@fuzz(80)
@given(data=st.data())
def test_cli_refuses_bad_arguments_with_a_one_line_error(data, folder, mnist_dir, monkeypatch):
    monkeypatch.setenv("MODULARCNN_DATA", str(mnist_dir.parent))
    monkeypatch.setenv("MODULARCNN_OFFLINE", "1")
    argv = data.draw(cli_arguments(folder))
    status, out, err = run_cli(argv)
    if status == 1:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("modularcnn: error: "), (argv, err)
    elif status != 2:
        assert status == 0, (argv, status, err)


def pixel_arrays():
    """Images for `modularcnn predict` on 4x4x1 inputs: uint8, other ints, floats in and out of
    [0, 1], NaN, wrong shapes."""
    @st.composite
    def arrays(draw):
        shape = draw(st.sampled_from([(2, 4, 4), (2, 4, 4, 1), (4, 4), (4, 4, 1), (2, 4, 4, 3),
                                      (2, 16), (0, 4, 4), (2, 5, 4)]))
        dtype = draw(st.sampled_from(["uint8", "int16", "int64", "float32", "float64", "bool"]))
        value = draw(st.sampled_from([0, 1, 0.5, 2.0, -1, 255, 300, float("nan"), float("inf")]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            array = np.zeros(shape, dtype)
            if array.size:
                array.reshape(-1)[-1] = np.array(value).astype(dtype)
        return array
    return arrays()


@fuzz(60)
@given(images=pixel_arrays())
def test_cli_predict_takes_only_documented_pixel_values(images, folder):
    """`predict` takes uint8 levels or floats in [0, 1] of the model's image shape (item 12): those
    give predictions; values outside, NaN, and other shapes a one-line error."""
    model, _ = cli_files(folder)
    path = os.path.join(folder, "images.npy")
    np.save(path, images)
    status, out, err = run_cli(["predict", model, path])
    levels = images.dtype.kind in "iu" and images.size and 0 <= images.min() and images.max() <= 255
    fractions = images.dtype.kind == "f" and images.size and bool(
        np.all(np.isfinite(images)) and images.min() >= 0 and images.max() <= 1)
    shape_fits = images.shape in ((2, 4, 4), (2, 4, 4, 1), (4, 4), (4, 4, 1))
    if images.dtype.kind == "b":
        return  # not documented either way; run_cli has checked there was no traceback
    if (levels or fractions) and shape_fits:
        assert status == 0, err
    else:
        assert status == 1 and len(err.strip().splitlines()) == 1, (images, status, err)


@pytest.mark.parametrize("argv, words", [
    (["train", "--epochs", "-1"], "--epochs"),
    (["predict", "absent.h5", "absent.npy"], "absent.h5"),
    (["summary", "garbage.h5"], "garbage.h5"),
])
def test_cli_as_a_subprocess_exits_with_an_error_not_a_traceback(argv, words, folder):
    """The real command, run as a user runs it: a non-zero status and no traceback."""
    cli_files(folder)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(Path(PACKAGE_DIR).parent)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))

    def limit():  # the same bound as in-process examples, applied to the child
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, resource.RLIM_INFINITY))

    done = subprocess.run([sys.executable, "-m", "modularcnn.cli", *argv], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=120, preexec_fn=limit)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr and words in done.stderr, done.stderr


# --------------------------------------------------------------------------------------------------
# Networks and public functions
# --------------------------------------------------------------------------------------------------

def _model_arguments():
    a = Input((4,))
    return {"inputs": a, "outputs": layers.Dense(3)(a)}


#: A valid call of each network constructor and public function; the fuzzing replaces one argument.
def public_calls():
    from modularcnn import models, utils
    y_ids = np.array([0, 2, 1, 1])
    scores = np.eye(3, dtype=np.float32)[[0, 2, 2, 1]]
    return {
        "Net": (Net, dict(input_shape=(4,), name="net", seed=0, dtype="float32", layers=None,
                          trainable=True)),
        "Sequential": (modularcnn.Sequential, dict(layers=[layers.Dense(2)], name="seq",
                                                   trainable=True)),
        "Model": (Model, dict(_model_arguments(), name="model", seed=0, trainable=True)),
        "Input": (Input, dict(shape=(4,), name="image", dtype=None, batch_size=None)),
        "to_categorical": (utils.to_categorical, dict(x=y_ids, num_classes=3)),
        "normalize": (utils.normalize, dict(x=scores, axis=-1, order=2)),
        "confusion_matrix": (metrics.confusion_matrix, dict(y_true=y_ids, y_pred_classes=y_ids,
                                                            num_classes=3)),
        "accuracy": (metrics.accuracy, dict(y_true=y_ids, y_pred=scores)),
        "binary_accuracy": (metrics.binary_accuracy, dict(y_true=scores, y_pred=scores,
                                                          threshold=0.5)),
        "top_k_accuracy": (metrics.top_k_accuracy, dict(y_true=y_ids, y_pred=scores, k=2)),
        "mean_squared_error": (metrics.mean_squared_error, dict(y_true=scores, y_pred=scores)),
        "models.get": (models.get, dict(name="lenet", input_shape=(28, 28, 1), num_classes=10,
                                        seed=0)),
        "model_from_json": (models.model_from_json, dict(json_string=trained_net().to_json(),
                                                         custom_objects=None)),
        "clone_model": (models.clone_model, dict(model=trained_net(), input_tensors=None,
                                                 clone_function=None)),
        "optimizers.get": (optimizers.get, dict(identifier="adam")),
        "losses.get": (losses.get, dict(identifier="mse")),
        "metrics.get": (metrics.get, dict(identifier="accuracy")),
        "activations.get": (activations.get, dict(identifier="relu")),
        "initializers.get": (initializers.get, dict(identifier="he_normal")),
        "schedules.get": (schedules.get, dict(identifier={"class_name": "ExponentialDecay", "config": {
            "initial_learning_rate": 0.1, "decay_steps": 10, "decay_rate": 0.5}})),
    }


@st.composite
def public_function_calls(draw):
    calls = public_calls()
    name = draw(st.sampled_from(sorted(calls)))
    argument = draw(st.sampled_from(sorted(calls[name][1])))
    return name, argument, draw(st.one_of(bad_values(), bad_arrays()))


@fuzz(200)
@given(call=public_function_calls())
def test_networks_and_public_functions_refuse_bad_values_with_value_error(call, folder):
    name, argument, value = call
    function, arguments = public_calls()[name]
    arguments[argument] = value
    raised, made = documented(lambda: function(**arguments))
    if not raised and isinstance(made, Net) and made.layers == [] and name in ("Net",):
        documented(lambda: (made.add(layers.Dense(2)), made.predict(np.ones((2, 4), np.float32))))


def test_loader_and_function_findings_stay_fixed(folder):
    """What the loader, network and function fuzzing found (TypeError, MemoryError, OverflowError,
    NumPy's errors; load_csv's image_shape=(2.7,) silently became (2,)), pinned."""
    from modularcnn import models, utils
    from modularcnn.datasets import load_csv
    path = os.path.join(folder, "two.csv")
    with open(path, "w") as handle:
        handle.write("1,0,255\n0,3,4\n")
    ids = np.array([0, 1])
    for call, words in [
        (lambda: load_csv(path, dtype="bogus"), "dtype"),
        (lambda: load_csv(path, dtype=None), "dtype"),
        (lambda: load_csv(path, image_shape=(2.7,)), "image_shape"),
        (lambda: load_csv(None), "path"),
        (lambda: Input((4,), dtype={"class_name": "Bogus"}), "dtype"),
        (lambda: models.get("lenet", input_shape=None), "input_shape"),
        (lambda: models.get({}), "preset"),
        (lambda: models.get("lenet", num_classes=float("inf")), "num_classes"),
        (lambda: metrics.binary_accuracy(ids, np.array([0.2, 0.9]), threshold=None), "threshold"),
        (lambda: metrics.accuracy(ids, object()), "dtype"),
        (lambda: metrics.accuracy([None, None], np.eye(2)), "dtype"),
        (lambda: metrics.confusion_matrix(ids, ids, num_classes=10**12), "MAX_ARRAY_ELEMENTS"),
        (lambda: metrics.confusion_matrix(ids, np.array([0, 10**6])), "MAX_ARRAY_ELEMENTS"),
        (lambda: utils.to_categorical(ids, num_classes=10**12), "MAX_ARRAY_ELEMENTS"),
        (lambda: utils.normalize(np.float64(3.0)), "scalar"),
        (lambda: utils.normalize(np.ones((2, 2)), order="x"), "order"),
    ]:
        with pytest.raises(ValueError, match=words) as caught, bounded():
            call()
        assert raised_by_the_library(caught.value)
    assert load_csv(path, image_shape=2)[0].shape == (2, 2)
