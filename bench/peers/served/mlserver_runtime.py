"""MLServer custom runtime (MLServer has no ONNX runtime of its own): the graph on onnxruntime.

MLServer's adaptive batching (`max_batch_size`, `max_batch_time` in model-settings.json)
concatenates queued requests along the first axis before `predict` and splits the answer."""

from __future__ import annotations

from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from onnx_session import classify, open_session


class OnnxClassifier(MLModel):
    async def load(self) -> bool:
        self.session = open_session()
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        tokens = NumpyCodec.decode_input(payload.inputs[0])
        probabilities = classify(self.session, tokens)
        return InferenceResponse(
            model_name=self.name,
            outputs=[NumpyCodec.encode_output("probabilities", probabilities)],
        )
