"""muai-openvino: the OpenVINO backend of muai, and its exporter."""

__version__ = "0.1.0"
