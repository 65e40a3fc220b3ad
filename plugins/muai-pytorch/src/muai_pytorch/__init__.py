"""muai-pytorch: the PyTorch backend of muai."""

__version__ = "0.1.0"
