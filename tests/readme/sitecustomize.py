"""Caps training epochs in the Python processes that tests/test_readme.py starts.

tests/test_readme.py puts this folder first on ``PYTHONPATH`` for the README's blocks (the Python
blocks, the ``modularcnn`` commands and the scripts they run, and every process those start), so
Python imports this module at start-up. When ``MODULARCNN_README_EPOCHS`` is set, every
``Net.fit`` / ``Model.fit`` trains at most that many epochs past its ``initial_epoch``; the blocks'
text stays as a reader sees it. Nothing happens when the variable is unset.
"""

import os

_CAP = os.environ.get("MODULARCNN_README_EPOCHS")

if _CAP:
    import functools
    import inspect

    import modularcnn.training as _training

    _fit = _training.fit
    _signature = inspect.signature(_fit)

    @functools.wraps(_fit)
    def _capped_fit(*args, **kwargs):
        bound = _signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = bound.arguments
        limit = arguments["initial_epoch"] + int(_CAP)
        if arguments["epochs"] > limit:
            arguments["epochs"] = limit
        return _fit(*bound.args, **bound.kwargs)

    _training.fit = _capped_fit
