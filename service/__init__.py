"""rnnserve's HTTP service: serves the model repository on onnxruntime (never imports torch)."""

__version__ = "0.1.0"
