"""``LambdaCallback``: a callback made of plain functions, as Keras's."""

from .base import Callback

#: Every hook a LambdaCallback may be given, with the arguments the function receives.
HOOKS = {
    "on_train_begin": ("logs",), "on_train_end": ("logs",),
    "on_epoch_begin": ("epoch", "logs"), "on_epoch_end": ("epoch", "logs"),
    "on_train_batch_begin": ("batch", "logs"), "on_train_batch_end": ("batch", "logs"),
    "on_test_begin": ("logs",), "on_test_end": ("logs",),
    "on_test_batch_begin": ("batch", "logs"), "on_test_batch_end": ("batch", "logs"),
    "on_predict_begin": ("logs",), "on_predict_end": ("logs",),
    "on_predict_batch_begin": ("batch", "logs"), "on_predict_batch_end": ("batch", "logs"),
}


class LambdaCallback(Callback):
    """Run ``function(epoch, logs)``, ``function(batch, logs)`` or ``function(logs)`` at a hook.

    ``LambdaCallback(on_epoch_end=lambda epoch, logs: print(epoch, logs["loss"]))``. Any hook of
    :class:`Callback` may be given by name (``on_train_begin``, ``on_test_batch_end``, ...); Keras's
    short names ``on_batch_begin``/``on_batch_end`` mean the training batches. A name that is not a
    hook, or a value that is not callable, is a ``ValueError``.
    """

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None, on_train_end=None,
                 on_train_batch_begin=None, on_train_batch_end=None, **kwargs):
        super().__init__()
        given = {"on_epoch_begin": on_epoch_begin, "on_epoch_end": on_epoch_end,
                 "on_train_begin": on_train_begin, "on_train_end": on_train_end,
                 "on_train_batch_begin": on_train_batch_begin, "on_train_batch_end": on_train_batch_end}
        for short in ("on_batch_begin", "on_batch_end"):
            if short in kwargs:
                full = short.replace("on_batch", "on_train_batch")
                if given[full] is not None:
                    raise ValueError(f"LambdaCallback: {short} and {full} are the same hook; give one")
                given[full] = kwargs.pop(short)
        unknown = sorted(set(kwargs) - set(HOOKS))
        if unknown:
            raise ValueError(f"LambdaCallback: {unknown} are not hooks; the hooks are "
                             f"{', '.join(sorted(HOOKS))}")
        given.update(kwargs)
        for name, function in given.items():
            if function is not None and not callable(function):
                raise ValueError(f"LambdaCallback: {name} must be callable, got {function!r}")
        self.functions = {name: function for name, function in given.items() if function is not None}
        for name, function in self.functions.items():
            # An instance attribute shadows the base class's do-nothing hook.
            setattr(self, name, function)
