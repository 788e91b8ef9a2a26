"""Callbacks: code that runs at fixed points of ``fit`` (Keras's hook names and behaviour).

Subclass :class:`Callback` and override any of ``on_train_begin/end``, ``on_epoch_begin/end``,
``on_train_batch_begin/end`` (and ``on_test_*``/``on_predict_*``). ``self.model`` is the network being
trained; setting ``self.model.stop_training = True`` ends training after the current epoch. ``logs``
is a dict of the epoch's figures: ``loss``, each metric, their ``val_`` forms and ``lr``.
"""

import csv
import math
import os

import numpy as np

__all__ = ["Callback", "CallbackList", "History", "EarlyStopping", "LearningRateScheduler",
           "ReduceLROnPlateau", "TerminateOnNaN", "CSVLogger", "ModelCheckpoint"]


class Callback:
    """Base class: every hook does nothing."""

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = dict(params)

    def on_train_begin(self, logs=None): pass
    def on_train_end(self, logs=None): pass
    def on_epoch_begin(self, epoch, logs=None): pass
    def on_epoch_end(self, epoch, logs=None): pass
    def on_train_batch_begin(self, batch, logs=None): pass
    def on_train_batch_end(self, batch, logs=None): pass
    def on_test_begin(self, logs=None): pass
    def on_test_end(self, logs=None): pass
    def on_test_batch_begin(self, batch, logs=None): pass
    def on_test_batch_end(self, batch, logs=None): pass
    def on_predict_begin(self, logs=None): pass
    def on_predict_end(self, logs=None): pass
    def on_predict_batch_begin(self, batch, logs=None): pass
    def on_predict_batch_end(self, batch, logs=None): pass


class CallbackList:
    """The callbacks of one ``fit``: ``call(hook, ...)`` runs that hook on each, in order."""

    def __init__(self, callbacks, model=None, params=None):
        self.callbacks = list(callbacks)
        for callback in self.callbacks:
            if not isinstance(callback, Callback):
                raise ValueError(f"callbacks must be Callback instances, got {callback!r}")
            if model is not None:
                callback.set_model(model)
            if params is not None:
                callback.set_params(params)

    def call(self, hook, *args):
        for callback in self.callbacks:
            getattr(callback, hook)(*args)


class History(Callback):
    """Records each epoch's logs: ``history.history["val_loss"]`` is a list with one value per epoch.

    ``interrupted`` tells whether Ctrl-C stopped training early.
    """

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []
        #: True when Ctrl-C ended training before its last epoch.
        self.interrupted = False

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)

    def __repr__(self):
        keys = ", ".join(self.history)
        return f"<History epochs={len(self.epoch)} keys=[{keys}]>"


def _monitor_mode(monitor, mode):
    """``"min"`` or ``"max"``: accuracy-like figures improve upwards, losses downwards."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode != "auto":
        return mode
    return "max" if any(word in monitor for word in ("acc", "auc", "precision", "recall")) else "min"


class _Monitoring(Callback):
    """Shared by callbacks that watch one logged figure for improvement."""

    def __init__(self, monitor, min_delta, mode):
        super().__init__()
        self.monitor = monitor
        self.min_delta = abs(float(min_delta))
        self.mode = _monitor_mode(monitor, mode)
        self.best = None

    def _current(self, logs):
        value = (logs or {}).get(self.monitor)
        if value is None:
            available = ", ".join(sorted(logs or {})) or "none"
            raise ValueError(
                f"{type(self).__name__} monitors {self.monitor!r}, which is not logged; "
                f"available: {available} (val_ figures need validation data)"
            )
        return float(value)

    def _improved(self, value):
        if self.best is None:
            return not math.isnan(value)
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta


class EarlyStopping(_Monitoring):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs in a row.

    With ``restore_best_weights=True`` the weights of the best epoch are put back when training ends —
    whether it stopped early or ran to its last epoch (Keras restores only in the first case, a
    well-known surprise).
    """

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, mode="auto", baseline=None,
                 restore_best_weights=False, start_from_epoch=0, verbose=0):
        super().__init__(monitor, min_delta, mode)
        self.patience = int(patience)
        self.baseline = baseline
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = int(start_from_epoch)
        self.verbose = verbose
        self.wait = 0
        self.stopped_epoch = None
        self.best_epoch = None
        self.best_weights = None

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.best = self.baseline
        self.best_epoch = None
        self.best_weights = None
        self.stopped_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        if epoch < self.start_from_epoch:
            return
        value = self._current(logs)
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch is not None and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping "
                  f"(best {self.monitor} {self.best:.4f} at epoch {self.best_epoch + 1})")
        if self.restore_best_weights and self.best_weights is not None:
            self.model.set_weights(self.best_weights)
            if self.verbose:
                print(f"Restored the weights of epoch {self.best_epoch + 1}")


class LearningRateScheduler(Callback):
    """Set the learning rate at the start of each epoch to ``schedule(epoch, lr)``.

    ``schedule`` may also take only ``epoch``. The seed CLI's ``lr_multiplier`` is
    ``LearningRateScheduler(lambda epoch, lr: lr * multiplier)``.
    """

    def __init__(self, schedule, verbose=0):
        super().__init__()
        if not callable(schedule):
            raise ValueError(f"schedule must be callable, got {schedule!r}")
        self.schedule = schedule
        self.verbose = verbose

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = self.model.optimizer
        lr = optimizer.current_learning_rate
        try:
            new_lr = self.schedule(epoch, lr)
        except TypeError:
            new_lr = self.schedule(epoch)
        new_lr = float(new_lr)
        if not math.isfinite(new_lr) or new_lr < 0:
            raise ValueError(f"LearningRateScheduler: schedule returned {new_lr!r} for epoch {epoch}")
        optimizer.learning_rate = new_lr
        if self.verbose:
            print(f"Epoch {epoch + 1}: learning rate {new_lr:.6g}")


class ReduceLROnPlateau(_Monitoring):
    """Multiply the learning rate by ``factor`` after ``patience`` epochs without improvement."""

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, mode="auto", min_delta=1e-4,
                 cooldown=0, min_lr=0.0, verbose=0):
        super().__init__(monitor, min_delta, mode)
        if not 0 < factor < 1:
            raise ValueError(f"ReduceLROnPlateau: factor must be in (0, 1), got {factor!r}")
        self.factor = float(factor)
        self.patience = int(patience)
        self.cooldown = int(cooldown)
        self.min_lr = float(min_lr)
        self.verbose = verbose
        self.wait = 0
        self.cooldown_counter = 0

    def on_train_begin(self, logs=None):
        self.best, self.wait, self.cooldown_counter = None, 0, 0

    def on_epoch_end(self, epoch, logs=None):
        value = self._current(logs)
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improved(value):
            self.best, self.wait = value, 0
            return
        if self.cooldown_counter > 0:
            return
        self.wait += 1
        if self.wait >= self.patience:
            optimizer = self.model.optimizer
            old = optimizer.current_learning_rate
            new = max(old * self.factor, self.min_lr)
            if new < old:
                optimizer.learning_rate = new
                if self.verbose:
                    print(f"Epoch {epoch + 1}: ReduceLROnPlateau lowered the learning rate to {new:.6g}")
            self.cooldown_counter = self.cooldown
            self.wait = 0


class TerminateOnNaN(Callback):
    """Stop training as soon as a batch's loss is NaN or infinite."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            print(f"Batch {batch}: invalid loss {loss}, terminating training")
            self.model.stop_training = True


class CSVLogger(Callback):
    """Append one row per epoch (``epoch`` and every logged figure) to a CSV file, flushed each epoch."""

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename = os.fspath(filename)
        self.separator = separator
        self.append = append
        self._file = None
        self._writer = None
        self._keys = None

    def on_train_begin(self, logs=None):
        exists = self.append and os.path.exists(self.filename) and os.path.getsize(self.filename) > 0
        self._file = open(self.filename, "a" if self.append else "w", newline="")
        self._writer = None
        self._keys = None
        self._header_written = exists

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self._writer is None:
            self._keys = sorted(logs)
            self._writer = csv.DictWriter(self._file, fieldnames=["epoch"] + self._keys,
                                          delimiter=self.separator, extrasaction="ignore")
            if not self._header_written:
                self._writer.writeheader()
        self._writer.writerow({"epoch": epoch, **{k: logs.get(k, "") for k in self._keys}})
        self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
            self._file = None


from .saving.checkpoint import ModelCheckpoint  # noqa: E402, F401  (re-exported here)
