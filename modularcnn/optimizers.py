"""Gradient-descent optimizers that update named parameter arrays in place.

Usage::

    opt = Adam(learning_rate=1e-3)
    opt.apply(params, grads)   # params, grads: dict "layer/weight" -> np.ndarray

``apply`` changes the parameter arrays in place (the same array objects stay in the model), keeps
their dtype, and increments ``opt.iterations``. Per-parameter state (momentum, moving averages) is
created lazily on the first ``apply`` in the parameter's dtype, and can be saved and restored with
``get_state()`` / ``set_state()`` under flat names such as ``"m/conv2d_1/kernel"``.

The update formulas follow Keras 3 (same defaults, same epsilon placement), so results can be
compared with Keras step for step. Weight decay is *decoupled* (``p -= lr * weight_decay * p``,
applied before the gradient step) for every optimizer, as in Keras; note this differs from
PyTorch's ``SGD(weight_decay=...)``, which adds ``weight_decay * p`` to the gradient.
"""

import math
import numbers

import numpy as np

from . import schedules
from .catalog import Catalog, Configurable
from .kernels.workspace import Workspace

__all__ = [
    "Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "Adamax", "Nadam", "Lion",
    "get", "serialize",
]


def _optional_positive(value, what, owner):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(f"{owner}: {what} must be None or a positive number, received {value!r}.")
    return float(value)


def _float_in(value, low, high, what, owner, *, include_high=False):
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    ok = ok and (low <= value <= high if include_high else low <= value < high)
    if not ok:
        bracket = "]" if include_high else ")"
        raise ValueError(
            f"{owner}: {what} must lie in [{low}, {high}{bracket}, received {value!r}."
        )
    return float(value)


def _positive_epsilon(epsilon, owner):
    value = _optional_positive(epsilon, "epsilon", owner)
    if value is None:
        raise ValueError(f"{owner}: epsilon must be a positive number, received None.")
    return value


class ParameterRange(str):
    """The key :meth:`Optimizer.update_ranges` gives ``_update`` for the flat range ``start:stop`` of
    the parameter ``key`` (C-contiguous) when it updates only part of it: as a string it names the
    range (``"dense_1/kernel[0:200704]"``), so the range's scratch arrays are its own, while
    ``_slot`` returns the same range of the whole parameter's state."""

    def __new__(cls, key, start, stop):
        self = super().__new__(cls, f"{key}[{start}:{stop}]")
        self.key, self.start, self.stop = key, start, stop
        return self


class Optimizer(Configurable):
    """Base class: learning rate, weight decay, gradient clipping, state bookkeeping.

    Parameters
    ----------
    learning_rate : float or LearningRateSchedule
        A constant rate, or a schedule called with ``iterations`` before each update.
    weight_decay : float
        Decoupled weight decay: each ``apply`` first does ``p -= lr * weight_decay * p``.
    clipnorm : float or None
        Rescale each gradient array whose L2 norm exceeds ``clipnorm`` down to that norm.
    clipvalue : float or None
        Clip every gradient element to ``[-clipvalue, clipvalue]`` (done before any norm clipping).
    global_clipnorm : float or None
        Rescale all gradients together when their joint L2 norm exceeds ``global_clipnorm``.
        Cannot be combined with ``clipnorm``.

    Subclasses define ``slot_names()`` (the per-parameter state they keep, e.g. ``["m", "v"]``),
    ``_update(key, param, grad, lr)`` and extend ``get_config()``. A subclass whose ``_update`` is
    element-wise (each element of the new ``param`` and state depends only on the same element of
    ``param``, ``grad`` and state) sets ``elementwise = True``: data-parallel workers may then each run
    it over their flat ranges of the parameters (:meth:`update_ranges`), with the same result.
    """

    #: May ``_update`` run over flat ranges of a parameter? Every optimizer here may. A
    #: subclass that overrides ``_update`` or ``_slot`` without saying so again is run whole. Only
    #: modularcnn's own classes run in the workers (a worker rebuilds the optimizer from its config).
    elementwise = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "elementwise" not in vars(cls) and ({"_update", "_slot"} & vars(cls).keys()):
            cls.elementwise = False

    def __init__(
        self, learning_rate, weight_decay=0.0, clipnorm=None, clipvalue=None, global_clipnorm=None
    ):
        owner = type(self).__name__
        self.learning_rate = learning_rate
        if isinstance(weight_decay, bool) or not isinstance(weight_decay, numbers.Real) or not (
            weight_decay >= 0
        ):
            raise ValueError(
                f"{owner}: weight_decay must be a number >= 0, received {weight_decay!r}."
            )
        self.weight_decay = float(weight_decay)
        self.clipnorm = _optional_positive(clipnorm, "clipnorm", owner)
        self.clipvalue = _optional_positive(clipvalue, "clipvalue", owner)
        self.global_clipnorm = _optional_positive(global_clipnorm, "global_clipnorm", owner)
        if self.clipnorm is not None and self.global_clipnorm is not None:
            raise ValueError(f"{owner}: set at most one of clipnorm and global_clipnorm, not both.")
        #: Number of ``apply`` calls so far; the schedule step for the next update.
        self.iterations = 0
        self._slots = {}  # "slot/param_key" -> state array, e.g. "m/dense_1/kernel"
        # Reused between steps, never saved: temporaries ("tmp/<key>") and clipped gradients ("clip/<key>").
        self._scratch = Workspace()

    # ---- learning rate -----------------------------------------------------------------------

    @property
    def learning_rate(self):
        """The configured rate: a float, or the LearningRateSchedule object. Settable."""
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        if isinstance(value, dict):
            value = schedules.get(value)
        if isinstance(value, schedules.LearningRateSchedule):
            self._learning_rate = value
            return
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
            math.isfinite(value) and value >= 0
        ):
            raise ValueError(
                f"{type(self).__name__}: learning_rate must be a finite number >= 0 or a "
                f"LearningRateSchedule, received {value!r}."
            )
        self._learning_rate = float(value)

    @property
    def current_learning_rate(self):
        """The learning rate (Python float) that the next ``apply`` will use."""
        if isinstance(self._learning_rate, schedules.LearningRateSchedule):
            return self._learning_rate(self.iterations)
        return self._learning_rate

    # ---- the update --------------------------------------------------------------------------

    def apply(self, params, grads):
        """Update every array in ``params`` in place, one optimizer step.

        Parameters
        ----------
        params : dict str -> np.ndarray
            Writable floating arrays, e.g. ``{"dense_1/kernel": (in, out),
            "dense_1/bias": (out,)}``.
        grads : dict str -> np.ndarray
            Same keys and shapes as ``params``. They are only read, never modified.
        """
        self._check_inputs(params, grads)
        grads = {key: np.asarray(grads[key], dtype=params[key].dtype) for key in params}
        grads = self._clip_gradients(grads)
        lr = self.current_learning_rate
        for key, param in params.items():
            self._decay_and_update(key, param, grads[key], lr)
        self.iterations += 1

    def update_ranges(self, params, grads, ranges, lr):
        """One step's update of the flat ranges ``[(key, start, stop)]`` of ``params`` only, with the
        learning rate ``lr`` at step ``iterations`` (which the caller advances): how a data-parallel
        worker updates its share (:mod:`modularcnn.parameter_shards`). Needs ``elementwise``,
        C-contiguous arrays and every slot built (:meth:`build`); no gradient clipping is applied.
        Over ranges that cover every element this gives exactly what :meth:`apply` gives.
        """
        for key, start, stop in ranges:
            param, grad = params[key], grads[key]
            if stop - start != param.size:   # part of the array: its own scratch, the same state
                key = ParameterRange(key, start, stop)
                param, grad = param.reshape(-1)[start:stop], grad.reshape(-1)[start:stop]
            self._decay_and_update(key, param, grad, lr)

    def _decay_and_update(self, key, param, grad, lr):
        """Decoupled weight decay, then the subclass's update: one array's (or range's) step."""
        if self.weight_decay:
            param *= 1 - lr * self.weight_decay
        self._update(key, param, grad, lr)

    def build(self, params):
        """Create the (zero) state for ``params`` now instead of on the first ``apply``.

        Useful to save an optimizer before it has taken a step. Existing state is kept.
        """
        for key, param in params.items():
            for slot in self.slot_names():
                self._slot(slot, key, param)

    def slot_names(self):
        """Names of the per-parameter state arrays this optimizer keeps (may be empty)."""
        return []

    def _update(self, key, param, grad, lr):
        raise NotImplementedError

    def _slot(self, slot, key, param):
        """Return the state array ``slot/key``, creating it (:meth:`_initial_slot`) if missing.

        For a :class:`ParameterRange` key, the same range of the whole parameter's state array (built
        beforehand: see :meth:`update_ranges`).
        """
        if isinstance(key, ParameterRange):
            return self._slots[f"{slot}/{key.key}"].reshape(-1)[key.start:key.stop]
        name = f"{slot}/{key}"
        state = self._slots.get(name)
        if state is None:
            state = self._slots[name] = self._initial_slot(slot, param)
        elif state.shape != param.shape or state.dtype != param.dtype:
            raise ValueError(
                f"{type(self).__name__}: state {name!r} has shape {state.shape} and dtype "
                f"{state.dtype}, but the parameter has shape {param.shape} and dtype "
                f"{param.dtype}. Was this optimizer state made for a different model?"
            )
        return state

    def _initial_slot(self, slot, param):
        """A new state array ``slot`` for ``param``: zeros like it (Adagrad starts elsewhere)."""
        return np.zeros_like(param)

    def _temporary(self, key, param):
        """A reusable scratch array like ``param``, so updates allocate nothing per step."""
        return self._scratch.get(f"tmp/{key}", param.shape, param.dtype)

    def _check_inputs(self, params, grads):
        owner = type(self).__name__
        if not isinstance(params, dict) or not isinstance(grads, dict):
            raise ValueError(
                f"{owner}.apply expects two dicts name -> array, received "
                f"{type(params).__name__} and {type(grads).__name__}."
            )
        if params.keys() != grads.keys():
            missing = sorted(params.keys() - grads.keys())
            extra = sorted(grads.keys() - params.keys())
            raise ValueError(
                f"{owner}.apply: params and grads must have the same keys; "
                f"gradients missing for {missing}, gradients without a parameter: {extra}."
            )
        for key, param in params.items():
            if not isinstance(param, np.ndarray) or not np.issubdtype(param.dtype, np.floating):
                raise ValueError(
                    f"{owner}.apply: params[{key!r}] must be a floating NumPy array, "
                    f"received {type(param).__name__} {getattr(param, 'dtype', '')}."
                )
            if not param.flags.writeable:
                raise ValueError(
                    f"{owner}.apply: params[{key!r}] is read-only; cannot update it in place."
                )
            grad_shape = np.shape(grads[key])
            if grad_shape != param.shape:
                raise ValueError(
                    f"{owner}.apply: grads[{key!r}] has shape {grad_shape}, expected the "
                    f"parameter's shape {param.shape}."
                )

    # ---- gradient clipping -------------------------------------------------------------------

    def _clip_gradients(self, grads):
        """Return the gradients to use, clipped as configured.

        Clipped gradients go into this optimizer's own buffers; the caller's arrays are untouched.
        """
        if self.clipvalue is not None:
            grads = {
                key: np.clip(g, -self.clipvalue, self.clipvalue, out=self._clip_buffer(key, g))
                for key, g in grads.items()
            }
        if self.clipnorm is not None:
            for key, g in grads.items():
                norm = _l2_norm(g)
                if norm > self.clipnorm:
                    grads[key] = np.multiply(g, self.clipnorm / norm, out=self._clip_buffer(key, g))
        if self.global_clipnorm is not None:
            total = math.sqrt(sum(_l2_norm(g) ** 2 for g in grads.values()))
            if total > self.global_clipnorm:
                scale = self.global_clipnorm / total
                grads = {
                    key: np.multiply(g, scale, out=self._clip_buffer(key, g))
                    for key, g in grads.items()
                }
        return grads

    def _clip_buffer(self, key, grad):
        return self._scratch.get(f"clip/{key}", grad.shape, grad.dtype)

    # ---- state for saving --------------------------------------------------------------------

    def get_state(self):
        """Return a copy of the optimizer state as a flat dict of arrays.

        Keys are ``"slot/param_key"`` (e.g. ``"m/conv2d_1/kernel"``) plus ``"iterations"``, a 0-d
        int64 array. Slots exist only for parameters seen by ``apply`` or ``build``.
        """
        state = {name: array.copy() for name, array in self._slots.items()}
        state["iterations"] = np.array(self.iterations, dtype=np.int64)
        return state

    def set_state(self, state):
        """Restore a state produced by ``get_state`` (of an optimizer with the same config).

        Everything is validated before anything changes: unknown or missing names, non-floating
        arrays, and shapes or dtypes that differ from state this optimizer already holds raise
        ValueError and leave the optimizer as it was.
        """
        owner = type(self).__name__
        if not isinstance(state, dict) or "iterations" not in state:
            raise ValueError(
                f"{owner}.set_state expects a dict with an 'iterations' entry, received "
                f"{sorted(state) if isinstance(state, dict) else type(state).__name__}."
            )
        iterations = np.asarray(state["iterations"])
        if iterations.size != 1 or not np.issubdtype(iterations.dtype, np.integer) or (
            int(iterations.reshape(())) < 0
        ):
            raise ValueError(
                f"{owner}.set_state: 'iterations' must be one integer >= 0, "
                f"received {state['iterations']!r}."
            )

        slots = {name: np.asarray(array) for name, array in state.items() if name != "iterations"}
        expected_slots = self.slot_names()
        keys = set()
        for name, array in slots.items():
            slot, _, key = name.partition("/")
            if slot not in expected_slots or not key:
                raise ValueError(
                    f"{owner}.set_state: unexpected state name {name!r}; expected 'iterations' "
                    f"and names 'slot/param' with slot in {expected_slots}."
                )
            if not np.issubdtype(array.dtype, np.floating):
                raise ValueError(
                    f"{owner}.set_state: state {name!r} must be a floating array, "
                    f"received dtype {array.dtype}."
                )
            keys.add(key)
        expected_names = {f"{slot}/{key}" for slot in expected_slots for key in keys}
        if self._slots:
            expected_names |= set(self._slots)
        if set(slots) != expected_names:
            raise ValueError(
                f"{owner}.set_state: state names do not match this optimizer; missing "
                f"{sorted(expected_names - set(slots))}, "
                f"unexpected {sorted(set(slots) - expected_names)}."
            )
        for key in keys:
            first = slots[f"{expected_slots[0]}/{key}"]
            for slot in expected_slots:
                name = f"{slot}/{key}"
                reference = self._slots.get(name, first)
                if slots[name].shape != reference.shape or slots[name].dtype != reference.dtype:
                    raise ValueError(
                        f"{owner}.set_state: state {name!r} has shape {slots[name].shape} and "
                        f"dtype {slots[name].dtype}, expected shape {reference.shape} and dtype "
                        f"{reference.dtype}."
                    )

        self._slots = {name: array.copy() for name, array in slots.items()}
        self.iterations = int(iterations.reshape(()))

    # ---- config ------------------------------------------------------------------------------

    def get_config(self):
        """Return the constructor's keyword arguments (JSON-serialisable).

        A schedule learning rate is stored as ``{"class_name": ..., "config": ...}``; the
        constructor accepts that form back.
        """
        lr = self._learning_rate
        if isinstance(lr, schedules.LearningRateSchedule):
            lr = schedules.serialize(lr)
        return {
            "learning_rate": lr,
            "weight_decay": self.weight_decay,
            "clipnorm": self.clipnorm,
            "clipvalue": self.clipvalue,
            "global_clipnorm": self.global_clipnorm,
        }



def _l2_norm(array):
    """L2 norm of a whole array as a Python float (no temporary the size of the array)."""
    flat = array.reshape(-1)
    return math.sqrt(float(np.dot(flat, flat)))


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum.

    Without momentum: ``p -= lr * g``. With momentum (velocity ``v``, starting at 0):
    ``v = momentum * v - lr * g``, then ``p += v``, or for Nesterov ``p += momentum * v - lr * g``.
    """

    elementwise = True

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.momentum = _float_in(momentum, 0, 1, "momentum", "SGD", include_high=True)
        self.nesterov = bool(nesterov)

    def slot_names(self):
        return ["momentum"] if self.momentum > 0 else []

    def _update(self, key, param, grad, lr):
        step = np.multiply(grad, lr, out=self._temporary(key, param))  # lr * g
        if self.momentum == 0:
            param -= step
            return
        velocity = self._slot("momentum", key, param)
        velocity *= self.momentum
        velocity -= step
        if self.nesterov:
            param -= step
            param += np.multiply(velocity, self.momentum, out=step)  # step is free to reuse
        else:
            param += velocity

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


def _moving_average(state, value, rate, tmp):
    """``state += rate * (value - state)`` in place (``tmp``: scratch like ``state``)."""
    np.subtract(value, state, out=tmp)
    tmp *= rate
    state += tmp


class _AdamFamily(Optimizer):
    """What Adam, Adamax and Nadam share: ``beta_1``, ``beta_2`` in [0, 1) and a positive epsilon."""

    def __init__(self, learning_rate, beta_1, beta_2, epsilon, **kwargs):
        super().__init__(learning_rate, **kwargs)
        owner = type(self).__name__
        self.beta_1 = _float_in(beta_1, 0, 1, "beta_1", owner)
        self.beta_2 = _float_in(beta_2, 0, 1, "beta_2", owner)
        self.epsilon = _positive_epsilon(epsilon, owner)

    def _squared(self, key, grad):
        """A reusable buffer for ``g**2``, so the second-moment update allocates nothing per step."""
        return self._scratch.get(f"squared/{key}", grad.shape, grad.dtype)

    def get_config(self):
        return {
            **super().get_config(),
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "epsilon": self.epsilon,
        }


class Adam(_AdamFamily):
    """Adam (Kingma & Ba), in Keras's formulation.

    With ``t = iterations + 1``::

        m = m + (1 - beta_1) * (g - m)
        v = v + (1 - beta_2) * (g**2 - v)
        v_hat = max(v_hat, v) if amsgrad else v
        alpha = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)
        p -= alpha * m / (sqrt(v_hat) + epsilon)
    """

    elementwise = True

    def __init__(
        self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, **kwargs
    ):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, **kwargs)
        self.amsgrad = bool(amsgrad)

    def slot_names(self):
        return ["m", "v", "vhat"] if self.amsgrad else ["m", "v"]

    def _update(self, key, param, grad, lr):
        m = self._slot("m", key, param)
        v = self._slot("v", key, param)
        tmp = self._temporary(key, param)
        t = self.iterations + 1
        alpha = lr * math.sqrt(1 - self.beta_2**t) / (1 - self.beta_1**t)

        _moving_average(m, grad, 1 - self.beta_1, tmp)
        _moving_average(v, np.square(grad, out=self._squared(key, grad)), 1 - self.beta_2, tmp)

        if self.amsgrad:
            v_hat = self._slot("vhat", key, param)
            np.maximum(v_hat, v, out=v_hat)
        else:
            v_hat = v
        np.sqrt(v_hat, out=tmp)
        tmp += self.epsilon
        np.divide(m, tmp, out=tmp)
        tmp *= alpha
        param -= tmp

    def get_config(self):
        return {**super().get_config(), "amsgrad": self.amsgrad}


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter); Keras's default decay of 0.004."""

    def __init__(self, learning_rate=0.001, weight_decay=0.004, **kwargs):
        super().__init__(learning_rate, weight_decay=weight_decay, **kwargs)


class RMSprop(Optimizer):
    """RMSprop, in Keras's formulation (epsilon inside the square root).

    ::

        ms = rho * ms + (1 - rho) * g**2
        mg = rho * mg + (1 - rho) * g                   # centered only
        denom = ms - mg**2 + epsilon if centered else ms + epsilon
        increment = lr * g / sqrt(denom)
        mom = momentum * mom + increment; p -= mom      # momentum > 0
        p -= increment                                  # momentum == 0
    """

    elementwise = True

    def __init__(
        self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, **kwargs
    ):
        super().__init__(learning_rate, **kwargs)
        owner = type(self).__name__
        self.rho = _float_in(rho, 0, 1, "rho", owner)
        self.momentum = _float_in(momentum, 0, 1, "momentum", owner, include_high=True)
        self.epsilon = _positive_epsilon(epsilon, owner)
        self.centered = bool(centered)

    def slot_names(self):
        names = ["velocity"]
        if self.momentum > 0:
            names.append("momentum")
        if self.centered:
            names.append("average_grad")
        return names

    def _update(self, key, param, grad, lr):
        velocity = self._slot("velocity", key, param)
        tmp = self._temporary(key, param)

        velocity *= self.rho
        np.square(grad, out=tmp)
        tmp *= 1 - self.rho
        velocity += tmp

        if self.centered:
            average_grad = self._slot("average_grad", key, param)
            average_grad *= self.rho
            np.multiply(grad, 1 - self.rho, out=tmp)
            average_grad += tmp
            np.square(average_grad, out=tmp)
            np.subtract(velocity, tmp, out=tmp)
            tmp += self.epsilon
        else:
            np.add(velocity, self.epsilon, out=tmp)
        np.sqrt(tmp, out=tmp)
        np.divide(grad, tmp, out=tmp)
        tmp *= lr  # tmp is now the increment lr * g / sqrt(denom)

        if self.momentum > 0:
            mom = self._slot("momentum", key, param)
            mom *= self.momentum
            mom += tmp
            param -= mom
        else:
            param -= tmp

    def get_config(self):
        return {
            **super().get_config(),
            "rho": self.rho,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "centered": self.centered,
        }


class Adagrad(Optimizer):
    """Adagrad (Duchi et al.), in Keras's formulation (epsilon inside the square root).

    ::

        acc = acc + g**2                   # acc starts at initial_accumulator_value
        p -= lr * g / sqrt(acc + epsilon)

    PyTorch's ``Adagrad`` starts the accumulator at 0 and adds ``eps`` outside the square root.
    """

    elementwise = True

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        owner = type(self).__name__
        if isinstance(initial_accumulator_value, bool) or not isinstance(
            initial_accumulator_value, numbers.Real
        ) or not (math.isfinite(initial_accumulator_value) and initial_accumulator_value >= 0):
            raise ValueError(
                f"{owner}: initial_accumulator_value must be a finite number >= 0, "
                f"received {initial_accumulator_value!r}."
            )
        self.initial_accumulator_value = float(initial_accumulator_value)
        self.epsilon = _positive_epsilon(epsilon, owner)

    def slot_names(self):
        return ["accumulator"]

    def _initial_slot(self, slot, param):
        return np.full_like(param, self.initial_accumulator_value)

    def _update(self, key, param, grad, lr):
        accumulator = self._slot("accumulator", key, param)
        tmp = self._temporary(key, param)
        np.square(grad, out=tmp)
        accumulator += tmp
        np.add(accumulator, self.epsilon, out=tmp)
        np.sqrt(tmp, out=tmp)
        np.divide(grad, tmp, out=tmp)
        tmp *= lr
        param -= tmp

    def get_config(self):
        return {
            **super().get_config(),
            "initial_accumulator_value": self.initial_accumulator_value,
            "epsilon": self.epsilon,
        }


class Adadelta(Optimizer):
    """Adadelta (Zeiler), in Keras's formulation, with ``rms(x) = sqrt(x + epsilon)``::

        acc_g = rho * acc_g + (1 - rho) * g**2
        delta = -rms(acc_delta) / rms(acc_g) * g
        acc_delta = rho * acc_delta + (1 - rho) * delta**2
        p += lr * delta

    Keras's defaults are ``learning_rate=0.001``, ``rho=0.95``, ``epsilon=1e-7`` (PyTorch: 1.0,
    0.9, 1e-6; the formula is the same).
    """

    elementwise = True

    def __init__(self, learning_rate=0.001, rho=0.95, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        owner = type(self).__name__
        self.rho = _float_in(rho, 0, 1, "rho", owner)
        self.epsilon = _positive_epsilon(epsilon, owner)

    def slot_names(self):
        return ["accumulated_grad", "accumulated_delta_var"]

    def _update(self, key, param, grad, lr):
        acc_grad = self._slot("accumulated_grad", key, param)
        acc_delta = self._slot("accumulated_delta_var", key, param)
        tmp = self._temporary(key, param)
        acc_grad *= self.rho
        np.square(grad, out=tmp)
        tmp *= 1 - self.rho
        acc_grad += tmp

        np.add(acc_delta, self.epsilon, out=tmp)
        delta = np.sqrt(tmp, out=tmp)
        delta *= grad
        delta /= np.sqrt(acc_grad + self.epsilon)
        delta *= -1  # delta = -rms(acc_delta) * g / rms(acc_grad)

        acc_delta *= self.rho
        acc_delta += (1 - self.rho) * np.square(delta)
        delta *= lr
        param += delta

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "epsilon": self.epsilon}


class Adamax(_AdamFamily):
    """Adamax (the infinity-norm variant of Adam, Kingma & Ba section 7), as Keras::

        m = m + (1 - beta_1) * (g - m)
        u = max(beta_2 * u, |g|)
        p -= lr * m / ((1 - beta_1**t) * (u + epsilon))      # t = iterations + 1

    PyTorch adds ``eps`` inside the maximum instead (``max(beta_2 * u, |g| + eps)``).
    """

    elementwise = True

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, **kwargs)

    def slot_names(self):
        return ["m", "u"]

    def _update(self, key, param, grad, lr):
        m = self._slot("m", key, param)
        u = self._slot("u", key, param)
        tmp = self._temporary(key, param)
        t = self.iterations + 1
        _moving_average(m, grad, 1 - self.beta_1, tmp)
        u *= self.beta_2
        np.maximum(u, np.abs(grad, out=tmp), out=u)
        np.add(u, self.epsilon, out=tmp)
        np.divide(m, tmp, out=tmp)
        tmp *= lr / (1 - self.beta_1**t)
        param -= tmp

class Nadam(_AdamFamily):
    """Adam with Nesterov momentum (Dozat), in Keras's formulation.

    With ``t = iterations + 1``, ``mu_t = beta_1 * (1 - 0.5 * 0.96**t)`` and
    ``prod_t = mu_1 * ... * mu_t``::

        m = m + (1 - beta_1) * (g - m)
        v = v + (1 - beta_2) * (g**2 - v)
        m_hat = mu_{t+1} * m / (1 - prod_t * mu_{t+1}) + (1 - mu_t) * g / (1 - prod_t)
        v_hat = v / (1 - beta_2**t)
        p -= lr * m_hat / (sqrt(v_hat) + epsilon)

    This equals PyTorch's ``NAdam(momentum_decay=1.0)`` (PyTorch's default decay is 0.004).
    ``prod_t`` is recomputed from ``iterations``, so it need not be saved.
    """

    elementwise = True

    _DECAY = 0.96

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, **kwargs)

    def slot_names(self):
        return ["m", "v"]

    def _mu(self, t):
        return self.beta_1 * (1.0 - 0.5 * self._DECAY**t)

    def _update(self, key, param, grad, lr):
        m = self._slot("m", key, param)
        v = self._slot("v", key, param)
        tmp = self._temporary(key, param)
        t = self.iterations + 1
        mu_t, mu_next = self._mu(t), self._mu(t + 1)
        product = math.prod(self._mu(i) for i in range(1, t + 1))

        _moving_average(m, grad, 1 - self.beta_1, tmp)
        _moving_average(v, np.square(grad, out=self._squared(key, grad)), 1 - self.beta_2, tmp)

        denominator = np.multiply(v, 1.0 / (1 - self.beta_2**t), out=tmp)
        np.sqrt(denominator, out=denominator)
        denominator += self.epsilon
        m_hat = m * (mu_next / (1 - product * mu_next))
        m_hat += grad * ((1 - mu_t) / (1 - product))
        m_hat /= denominator
        m_hat *= lr
        param -= m_hat

class Lion(Optimizer):
    """Lion, "evolved sign momentum" (Chen et al. 2023), as Keras::

        p -= lr * sign(beta_1 * m + (1 - beta_1) * g)
        m = beta_2 * m + (1 - beta_2) * g

    Every step moves each weight by exactly ``lr`` (or 0), so Lion wants a 3-10x smaller learning
    rate than Adam.
    """

    elementwise = True

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.99, **kwargs):
        super().__init__(learning_rate, **kwargs)
        owner = type(self).__name__
        if isinstance(beta_1, bool) or not isinstance(beta_1, numbers.Real) or not (
            0 < beta_1 <= 1
        ):
            raise ValueError(f"{owner}: beta_1 must lie in (0, 1], received {beta_1!r}.")
        self.beta_1 = float(beta_1)
        self.beta_2 = _float_in(beta_2, 0, 1, "beta_2", owner)

    def slot_names(self):
        return ["m"]

    def _update(self, key, param, grad, lr):
        m = self._slot("m", key, param)
        tmp = self._temporary(key, param)
        np.multiply(m, self.beta_1, out=tmp)
        tmp += (1 - self.beta_1) * grad
        np.sign(tmp, out=tmp)
        tmp *= lr
        param -= tmp
        m *= self.beta_2
        m += (1 - self.beta_2) * grad

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2}


# --------------------------------------------------------------------------------------------
# Look-up by name / config
# --------------------------------------------------------------------------------------------

_CATALOG = Catalog(
    "optimizer", Optimizer, (SGD, Adam, AdamW, RMSprop, Adagrad, Adadelta, Adamax, Nadam, Lion)
)


def get(identifier):
    """Return an optimizer.

    Parameters
    ----------
    identifier : str, Optimizer, Optimizer subclass or dict
        A name (``"sgd"``, ``"adam"``, ``"adamw"``, ``"rmsprop"``, ``"adagrad"``, ``"adadelta"``,
        ``"adamax"``, ``"nadam"``, ``"lion"``, case-insensitive) for the default
        settings, an instance (returned unchanged), a class, or a config dict
        ``{"class_name": ..., "config": {...}}`` as produced by :func:`serialize`.
    """
    return _CATALOG.get(identifier)


def serialize(optimizer):
    """Return ``{"class_name": ..., "config": ...}``; ``get`` turns it back into an optimizer."""
    return _CATALOG.serialize(optimizer)
