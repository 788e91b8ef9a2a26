"""The ``Callback`` base class (Keras's hook names) and the ``CallbackList`` that ``fit`` calls."""


class Callback:
    """Base class: every hook does nothing.

    A callback that writes files (checkpoints, logs) sets ``writes_files = True``: in an MPI job
    (``fit(strategy="mpi")``) only rank 0 runs it, so each file is written once. Every other callback
    runs on every rank with the same logs, so one that stops training or changes the learning rate
    decides the same on every rank (it must decide from ``logs`` and the network, never from
    something only one rank sees, such as its clock).
    """

    #: Whether this callback writes files (run by MPI's rank 0 only).
    writes_files = False

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
