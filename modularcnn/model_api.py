"""Keras's model methods that are about the model as an object, for ``Net`` and ``Model`` alike.

``Net`` (and through it the graph ``Model``) inherits :class:`KerasModelMethods`: ``pop``,
``get_layer(name=, index=)``, ``predict_on_batch``, ``weights``/``trainable_weights``/
``non_trainable_weights``, ``metrics_names`` and ``to_json``. :func:`as_keras_result` turns the
``{"loss": ..., metric: ...}`` dict of ``evaluate`` into what Keras returns (a list, or the loss alone
when there are no metrics). They live here, in one place, so that ``net.py`` keeps the layer stack and
``functional.py`` the graph; nothing here knows which of the two it is on beyond ``graph``.
"""

import json
import numbers

import numpy as np

from .layers.base import all_layers
from .version import __version__


def as_keras_result(logs):
    """``evaluate``'s figures as Keras returns them without ``return_dict``: ``[loss, metric, ...]``
    in the order of ``metrics_names``, or the loss alone (a float) when nothing else is logged."""
    values = [float(value) for value in logs.values()]
    return values[0] if len(values) == 1 else values


class KerasModelMethods:
    """Keras's model-as-object methods; mixed into :class:`~modularcnn.Net`."""

    # -- layers ----------------------------------------------------------------------------------

    def pop(self):
        """Remove the last layer and return it, as Keras's ``Sequential.pop()``.

        The input shape stays. A compiled network stays compiled (its loss is bound again to the new
        last layer on the next ``fit``/``evaluate``). ``ValueError`` for an empty network or a graph
        ``Model`` (whose layers are not a stack).
        """
        if getattr(self, "graph", None) is not None:
            raise ValueError(f"{self.name}: pop() is for a Net (Sequential); a graph Model is "
                             "changed by building a new Model from its tensors")
        if not self.layers:
            raise ValueError(f"{self.name}: pop() needs a layer, but the network has none")
        layer = self.layers.pop()
        self._plan = None  # the steps were planned for the old stack
        return layer

    def get_layer(self, name=None, index=None):
        """The layer called ``name``, or at position ``index`` (0-based, negative from the end), as
        in Keras; give exactly one of them."""
        if (name is None) == (index is None):
            raise ValueError(f"{self.name}: get_layer takes name= or index= (one of them), got "
                             f"name={name!r}, index={index!r}")
        if index is not None:
            if isinstance(index, bool) or not isinstance(index, numbers.Integral):
                raise ValueError(f"{self.name}: get_layer index must be an int, got {index!r}")
            if not -len(self.layers) <= index < len(self.layers):
                raise ValueError(f"{self.name}: get_layer index {index} is out of range for "
                                 f"{len(self.layers)} layers")
            return self.layers[index]
        if not isinstance(name, str):
            raise ValueError(f"{self.name}: get_layer name must be a string, got {name!r}")
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"no layer named {name!r}; layers: {[layer.name for layer in self.layers]}")

    # -- weights ---------------------------------------------------------------------------------

    def _weight_entries(self):
        """``(array, trainable)`` for every array of every layer, in layer order (Keras's order
        within a layer: kernel, bias; gamma, beta, moving mean, moving variance)."""
        entries = []
        for layer in self.layers:
            trainable = layer.trainable_params if self.trainable else {}
            for key, value in layer.params.items():
                entries.append((value, key in trainable))
        return entries

    @property
    def weights(self):
        """Every layer's arrays (the live arrays, not copies), in layer order."""
        return [value for value, _ in self._weight_entries()]

    @property
    def trainable_weights(self):
        """The arrays the optimizer updates (live arrays), in layer order."""
        return [value for value, trainable in self._weight_entries() if trainable]

    @property
    def non_trainable_weights(self):
        """The arrays it does not: moving statistics, and every array of a frozen layer or network."""
        return [value for value, trainable in self._weight_entries() if not trainable]

    @property
    def metrics_names(self):
        """The names ``evaluate`` returns values for, in order: ``["loss", "accuracy", ...]``."""
        return ["loss"] + [name for name, _ in self.metrics]

    def restore_state_from(self, other):
        """Take ``other``'s weights, optimizer (with its state) and random generators' states, in
        place: ``other`` is this architecture loaded from a backup (``BackupAndRestore``), and
        training then continues as it would have in the run that saved it."""
        self.set_weights(other.get_weights())  # every count and shape checked first
        if other.compiled and other.optimizer is not None:
            self.optimizer = other.optimizer
        self.rng.bit_generator.state = other.rng.bit_generator.state
        for mine, theirs in zip(all_layers(self.layers), all_layers(other.layers)):
            if mine.owns_generator and theirs.owns_generator:
                mine.random.bit_generator.state = theirs.random.bit_generator.state

    # -- computing -------------------------------------------------------------------------------

    def predict_on_batch(self, x):
        """The outputs for one batch ``x`` in inference mode (a new array; a list of them with
        several outputs), as Keras's ``predict_on_batch``."""
        outputs = self.forward(x, training=False)
        if isinstance(outputs, list):
            return [np.array(output) for output in outputs]
        return np.array(outputs)

    # -- configuration ---------------------------------------------------------------------------

    def to_json(self, **kwargs):
        """The architecture as a JSON string (``json.dumps`` keyword arguments pass through, e.g.
        ``indent=2``); :func:`modularcnn.models.model_from_json` rebuilds it with fresh weights."""
        document = {"class_name": "Model" if getattr(self, "graph", None) is not None else "Net",
                    "config": self.get_config(), "modularcnn_version": __version__}
        return json.dumps(document, **kwargs)
