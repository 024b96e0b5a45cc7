"""rnnserve's HTTP service: serves the model repository on onnxruntime (never imports torch)."""
