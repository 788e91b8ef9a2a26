"""Callbacks that set the learning rate: ``LearningRateScheduler`` and ``ReduceLROnPlateau``."""

import math

from .. import validation
from .base import Callback
from .monitoring import _Monitoring


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
        if not validation.is_real(new_lr) or not math.isfinite(new_lr) or new_lr < 0:
            raise ValueError(f"LearningRateScheduler: schedule returned {new_lr!r} for epoch {epoch}; "
                             "expected a finite number >= 0")
        new_lr = float(new_lr)
        optimizer.learning_rate = new_lr
        if self.verbose:
            print(f"Epoch {epoch + 1}: learning rate {new_lr:.6g}")


class ReduceLROnPlateau(_Monitoring):
    """Multiply the learning rate by ``factor`` after ``patience`` epochs without improvement."""

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, mode="auto", min_delta=1e-4,
                 cooldown=0, min_lr=0.0, verbose=0):
        super().__init__(monitor, min_delta, mode)
        self.factor = validation.real(factor, "factor", "ReduceLROnPlateau", minimum=0, maximum=1,
                                      min_inclusive=False, max_inclusive=False)
        self.patience = validation.non_negative_int(patience, "patience", "ReduceLROnPlateau")
        self.cooldown = validation.non_negative_int(cooldown, "cooldown", "ReduceLROnPlateau")
        self.min_lr = validation.non_negative_number(min_lr, "min_lr", "ReduceLROnPlateau")
        self.verbose = verbose
        self.wait = 0
        self.cooldown_counter = 0

    def on_train_begin(self, logs=None):
        self.check_monitor()
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
