"""Open Inference Protocol over gRPC: the proto, its generated modules and the server."""
