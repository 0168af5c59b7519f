"""Loaders: PyTorch modules, ONNX files and .nnet files into the network IR."""

from __future__ import annotations


def load(source, input_shape=None, **options):
    """Placeholder: implemented by the loaders work."""
    raise NotImplementedError
