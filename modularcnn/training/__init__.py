"""Training machinery behind ``Net.fit``/``evaluate``/``predict``: data checks, objective, loop."""

from .loop import compile, evaluate, fit, predict, predict_classes, test_on_batch, train_on_batch

__all__ = ["compile", "fit", "evaluate", "predict", "predict_classes", "train_on_batch",
           "test_on_batch"]
