"""Callbacks: code that runs at fixed points of ``fit`` (Keras's hook names and behaviour).

Subclass :class:`Callback` and override any of ``on_train_begin/end``, ``on_epoch_begin/end``,
``on_train_batch_begin/end`` (and ``on_test_*``/``on_predict_*``). ``self.model`` is the network being
trained; setting ``self.model.stop_training = True`` ends training after the current epoch. ``logs``
is a dict of the epoch's figures: ``loss``, each metric, their ``val_`` forms and ``lr``.

One callback (or one family) per module; a new callback is a new module here, exported below.
Callbacks reach the network only through its public methods (``ModelCheckpoint`` saves with
``self.model.save``), so nothing under :mod:`modularcnn.saving` or :mod:`modularcnn.training` needs to
import this package back.
"""

from .backup_and_restore import BackupAndRestore
from .base import Callback, CallbackList
from .csv_logger import CSVLogger
from .early_stopping import EarlyStopping
from .history import History
from .lambda_callback import LambdaCallback
from .learning_rate import LearningRateScheduler, ReduceLROnPlateau
from .model_checkpoint import ModelCheckpoint
from .progress import ProgressLogger
from .terminate_on_nan import TerminateOnNaN

__all__ = ["Callback", "CallbackList", "History", "EarlyStopping", "LearningRateScheduler",
           "ReduceLROnPlateau", "TerminateOnNaN", "CSVLogger", "ModelCheckpoint", "ProgressLogger",
           "LambdaCallback", "BackupAndRestore"]
