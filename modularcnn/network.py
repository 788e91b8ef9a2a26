"""The seed library's ``network`` module: ``network.Net()`` is :class:`modularcnn.Net`.

With :mod:`modularcnn.layer`, a seed script runs after changing only ``from lib import layer, network``
to ``from modularcnn import layer, network``. ``Net`` has the seed's methods (``add``, ``summary``,
``train``, ``forwardpass``, ``backpass``) beside the Keras-style ones.
"""

from .net import Net

__all__ = ["Net"]
