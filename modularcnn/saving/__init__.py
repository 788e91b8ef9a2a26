"""Saving and loading: whole models and weights alone, in HDF5.

Checkpoints during training are :class:`modularcnn.callbacks.ModelCheckpoint`, which calls
``net.save``; nothing here imports the callbacks.

>>> net.save("model.h5")                      # architecture, weights, optimizer, random state
>>> net = modularcnn.load_model("model.h5")   # continues exactly where it stopped
>>> net.save_weights("weights.h5"); other.load_weights("weights.h5")

Files are written atomically and read with strict checks; see :mod:`.hdf5_format` for the layout.
"""

from .hdf5_format import FORMAT_VERSION
from .model_io import file_info, load_model, load_weights, save_model, save_weights

__all__ = [
           "FORMAT_VERSION",
           "file_info",
           "load_model",
           "load_weights",
           "save_model",
           "save_weights",
]
