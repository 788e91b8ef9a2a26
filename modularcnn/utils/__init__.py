"""Utilities at Keras's ``keras.utils`` names: ``to_categorical``, ``normalize``, ``Sequence`` (alias
``PyDataset``) and ``image_dataset_from_directory``."""

from .image_dataset import image_dataset_from_directory
from .numerical import normalize, to_categorical
from .sequence import PyDataset, Sequence

__all__ = ["to_categorical", "normalize", "Sequence", "PyDataset", "image_dataset_from_directory"]
