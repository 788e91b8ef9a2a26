"""Helpers at Keras's ``keras.utils`` names: ``modularcnn.utils.to_categorical``, ``normalize``."""

from .numerical import normalize, to_categorical

__all__ = ["to_categorical", "normalize"]
