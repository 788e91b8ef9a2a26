"""Stateless array kernels: window arithmetic, convolution, pooling.

Layers in :mod:`modularcnn.layers` are thin holders of parameters and caches that call these functions;
keeping the arithmetic here lets each kernel be tested alone against a naive loop and finite differences.
"""
