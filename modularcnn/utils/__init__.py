"""Utilities at Keras's ``keras.utils`` names: ``to_categorical``, ``normalize``, ``Sequence`` (alias
``PyDataset``), ``image_dataset_from_directory`` and ``set_random_seed``."""

from .image_dataset import image_dataset_from_directory
from .numerical import normalize, to_categorical
from .sequence import PyDataset, Sequence
from ..initializers import set_random_seed

__all__ = ["to_categorical", "normalize", "Sequence", "PyDataset", "image_dataset_from_directory",
           "set_random_seed"]
