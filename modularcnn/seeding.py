"""``set_random_seed``: one seed for the random draws of layers that belong to no ``Net``.

A ``Net`` seeds its layers itself (``Net(seed=...)``). Layers called on ``Input(...)`` tensors to build
a graph draw their initial weights when they are called, before any ``Model`` exists; without a seed
they draw from fresh, unseeded generators. After ``set_random_seed(seed)`` they all draw from one
generator seeded with ``seed``, so the same script builds the same weights, as
``keras.utils.set_random_seed`` does. It also seeds Python's ``random`` and NumPy's global generator.
"""

import random

import numpy as np

from . import validation

_GENERATOR = None


def set_random_seed(seed):
    """Seed the initial weights of graph layers (and ``random`` and ``np.random``) with ``seed``."""
    global _GENERATOR
    seed = validation.seed(seed, "seed", "set_random_seed")
    if seed is None:
        raise ValueError("set_random_seed: seed must be a non-negative int, got None")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    _GENERATOR = np.random.default_rng(seed)


def layer_generator():
    """The generator a layer outside any network draws from: the seeded one, or a fresh one."""
    return _GENERATOR if _GENERATOR is not None else np.random.default_rng()
