"""Exporting networks to other runtimes: :func:`export_onnx` (needs ``pip install modularcnn[onnx]``)."""

from .onnx import export_onnx, onnx_model

__all__ = ["export_onnx", "onnx_model"]
