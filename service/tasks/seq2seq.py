"""Sequence-to-sequence (text in, text out), decoded with step-level batching.

One decode loop per model version runs one decoder step at a time over every sequence in
flight. Requests that arrive mid-decode are encoded (together) and join at a next step
(within `max_batch_delay_ms`); a sequence leaves as soon as it ends (or its caller times out
or goes away), so a long output never holds up a short one. A beam of width k occupies k
rows of the step batch, which holds at most `max_batch_size` rows (at least the widest beam).

V1 parameters: `beam_width` (1, greedy, up to the manifest's max_beam_width), `attention`,
`max_output_tokens` or `max_output_chars` (the output's units, at most the manifest's). A
prediction is {"output": "2026-11-22"}, plus "reached_max_length": true when decoding
stopped at the maximum length before its end symbol, and with parameters.attention:
"input_chars" (the input after NFKC normalisation, one entry per character), "output_chars"
and "attention", a matrix with one row per output character and one column per input
character (each row sums to 1). A model that reads tokens
(a user's word-level model) names them "input_tokens" and "output_tokens" instead.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from contract.seq2seq_text import seq2seq_text
from contract.text import UnknownToken
from service.batching import AdmissionQueue, Waiting
from service.codecs import OutputTensor
from service.errors import InputError, InternalError, ModelNotReady
from service.metrics import DecodeStepStats
from service.phases import timed
from service.protocol import MetadataTensor
from service.tasks.base import TaskContext, parse_parameters
from service.threads import name_os_thread

TEXT, OUTPUT = "text", "output"
DEFAULT_MAX_BEAM_WIDTH = 8
_serial = itertools.count()
log = logging.getLogger("rnnserve.seq2seq")


class Seq2SeqParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    attention: bool = Field(False, description="return the alignment matrix")
    beam_width: int = Field(1, ge=1, description="1: greedy; more: beam search")
    max_output: int | None = Field(
        None,
        ge=1,
        validation_alias=AliasChoices("max_output_tokens", "max_output_chars"),
        description="stop decoding earlier than the model's maximum, in its output's units "
        "(characters or tokens): `max_output_tokens`, or `max_output_chars` alike",
    )


@dataclass(slots=True)
class Decoded:
    text: str
    ids: list[int]
    attention: np.ndarray  # (U, T) over real input characters
    truncated: bool


@dataclass(eq=False)
class Sequence:
    """One input in flight: k beam rows, their scores, tokens and attention so far."""

    tokens: list[str]  # the input as read (characters after NFKC, or tokens)
    ids: np.ndarray  # (T,) int64
    width: int
    max_len: int
    serial: int = field(default_factory=lambda: next(_serial))
    memory: np.ndarray | None = None  # (T, E)
    state: np.ndarray | None = None  # (k, S)
    scores: np.ndarray | None = None  # (k,)
    finished: np.ndarray | None = None  # (k,) bool
    history: np.ndarray | None = None  # (k, steps) int64
    alignment: np.ndarray | None = None  # (k, steps, T)
    last: np.ndarray | None = None  # (k,) the tokens the next step reads
    steps: list[tuple[int, np.ndarray]] = field(default_factory=list)  # greedy: token, weights
    result: Decoded | None = None


class Seq2SeqTask:
    """A seq2seq version: normalise and encode as in training, decode step by step."""

    def __init__(self, ctx: TaskContext, step_batching: bool = True) -> None:
        manifest, prep = ctx.manifest, ctx.manifest.preprocessing
        if prep is None or prep.kind not in ("characters", "seq2seq_tokens"):
            raise ValueError("a seq2seq model needs characters or seq2seq_tokens preprocessing")
        self.text = seq2seq_text(prep, ctx.folder)
        self.bos_id, self.eos_id = self.text.bos_id, self.text.eos_id
        chars = prep.kind == "characters" or prep.input.kind == prep.output.kind == "chars"
        self.names = ("input_chars", "output_chars") if chars else ("input_tokens", "output_tokens")
        cap = ctx.settings.max_sequence_length
        self.max_input = min(self.text.max_input, cap or self.text.max_input)
        self.max_output = self.text.max_output
        details = manifest.architecture.details if manifest.architecture else {}  # a user's: none
        self.max_beam = int(details.get("max_beam_width", DEFAULT_MAX_BEAM_WIDTH))
        self.encoder, self.provider = ctx.create_inference_session(
            ctx.folder / manifest.graphs["encoder"].file
        )
        self.decoder, _ = ctx.create_inference_session(ctx.folder / manifest.graphs["decoder"].file)
        self.limits = ctx.limits
        self.max_rows = max(ctx.limits.max_batch_size, self.max_beam)
        self.step_batching = step_batching
        self.on_batch = ctx.on_batch
        self._pending: AdmissionQueue[Sequence] = AdmissionQueue(
            ctx.limits.max_queue_size, self._wake
        )
        self._active: list[Waiting[Sequence]] = []
        self._loop_task: asyncio.Task | None = None
        self._idle: asyncio.Event | None = None
        self._executor = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="decode",
            initializer=name_os_thread,
            initargs=("rnnserve-decode",),
        )
        self._batch_key: tuple[int, ...] = ()
        self._memory = self._mask = None
        self.inputs = [MetadataTensor(name=TEXT, datatype="BYTES", shape=[-1])]
        self.outputs = [MetadataTensor(name=OUTPUT, datatype="BYTES", shape=[-1])]

    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    # -- requests -------------------------------------------------------------------------

    async def predict(
        self, instances: list[Any], parameters: dict[str, Any], timeout: float
    ) -> list[dict[str, Any]]:
        params = parse_parameters(Seq2SeqParameters, parameters)
        sequences = self.prepare(instances, params)
        results = await self.submit(sequences, timeout)
        return [
            self.respond(s, r, params.attention) for s, r in zip(sequences, results, strict=True)
        ]

    async def infer(
        self, arrays: dict[str, np.ndarray], parameters: dict[str, Any], timeout: float
    ) -> list[OutputTensor]:
        """V2: `text` (BYTES [batch]) in, `output` (BYTES [batch]) out."""
        params = parse_parameters(Seq2SeqParameters, parameters, ignore_unknown=True)
        if set(arrays) != {TEXT}:
            raise InputError(f"inputs {sorted(arrays)}: this model takes {TEXT!r} (BYTES [batch])")
        texts = arrays[TEXT]
        if texts.ndim == 2 and texts.shape[1] == 1:
            texts = texts[:, 0]
        if texts.ndim != 1 or texts.dtype != object:
            raise InputError(f"input {TEXT!r} must be BYTES of shape [batch]")
        sequences = self.prepare(texts.tolist(), params, TEXT)
        results = await self.submit(sequences, timeout)
        return [OutputTensor(OUTPUT, "BYTES", np.array([r.text for r in results], dtype=object))]

    def prepare(
        self,
        instances: list[Any],
        params: Seq2SeqParameters,
        where: str = "instances",
    ) -> list[Sequence]:
        """Validate every instance before any joins the decode: a bad one fails its request.
        `where` names the list in errors (`instances`, or the V2 input `text`)."""
        if params.beam_width > self.max_beam:
            raise InputError(
                f"parameters.beam_width must be in 1..{self.max_beam}", "parameters.beam_width"
            )
        max_len = min(params.max_output or self.max_output, self.max_output)
        sequences = []
        for i, text in enumerate(instances):
            at = f"{where}[{i}]"
            if not isinstance(text, str):
                raise InputError(f"{at} must be a string, got {type(text).__name__}", at)
            try:
                tokens, ids = self.text.encode(text)
            except UnknownToken as unknown:
                raise InputError(f"{at}: {unknown}", at) from None
            if not ids:
                raise InputError(f"{at} is empty", at)
            if len(ids) > self.max_input:
                raise InputError(
                    f"{at} has {len(ids)} {self.text.unit}; this model takes at most "
                    f"{self.max_input}",
                    at,
                )
            sequences.append(Sequence(tokens, np.array(ids, np.int64), params.beam_width, max_len))
        return sequences

    def respond(self, seq: Sequence, result: Decoded, attention: bool) -> dict[str, Any]:
        prediction: dict[str, Any] = {"output": result.text}
        if result.truncated:
            prediction["reached_max_length"] = True
        if attention:
            prediction[self.names[0]] = list(seq.tokens)
            prediction[self.names[1]] = [self.text.token(i) for i in result.ids]
            prediction["attention"] = result.attention.astype(np.float64).round(6).tolist()
        return prediction

    async def submit(self, sequences: list[Sequence], timeout: float) -> list[Decoded]:
        """Queue the sequences of one request and wait for all of them (see
        `AdmissionQueue.submit`); they leave the decode once the caller has given up."""
        return await self._pending.submit(sequences, timeout)

    def _wake(self) -> None:
        if self._loop_task is None:
            self._loop_task = asyncio.get_running_loop().create_task(self._decode_loop())

    async def drain(self) -> None:
        while self._pending or self._active:
            self._idle = self._idle or asyncio.Event()
            await self._idle.wait()
            self._idle = None

    def close(self) -> None:
        """Answer whoever still waits and free the worker thread and the sessions."""
        gone = ModelNotReady("the model was unloaded")
        self._pending.close(gone)
        for waiting in self._active:
            waiting.fail(gone)
        self._active = []
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.encoder = self.decoder = None
        self._memory = self._mask = None

    def warm_up(self) -> None:
        """A short greedy decode of a one-token input made of ids (a fixed text could be outside
        the vocabulary or the limits): ready means both graphs have answered."""
        ids = np.array([self.text.pad_id], np.int64)
        self._decode([Sequence([], ids, 1, min(4, self.max_output))])

    # -- the decode loop ------------------------------------------------------------------

    async def _decode_loop(self) -> None:
        """Step every sequence in flight until none is left; every caller gets an answer."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                self._active = [w for w in self._active if not w.abandoned]
                admitted = self._admit()
                if not self._active and not admitted:
                    break
                batch = self._active + admitted
                started = time.perf_counter()
                try:
                    newcomers, rows = [w.item for w in admitted], [w.item for w in batch]
                    _, phases = await loop.run_in_executor(
                        self._executor, timed, self.step, newcomers, rows
                    )
                    finished = time.perf_counter()
                    for waiting in batch:
                        if waiting.item.result is not None:
                            waiting.resolve(waiting.item.result)
                    self._active = [w for w in batch if w.item.result is None]
                    width = sum(s.width for s in rows)
                    queued = [started - w.enqueued for w in admitted]
                    self.on_batch(DecodeStepStats(width, queued, finished - started, phases))
                except Exception as error:  # fail these, keep serving the others
                    answer = error if isinstance(error, ModelNotReady) else _logged(error)
                    for waiting in batch:
                        waiting.fail(answer)
                    self._active = []
        finally:
            self._loop_task = None
            if self._idle is not None:
                self._idle.set()

    def _admit(self) -> list[Waiting[Sequence]]:
        """Pending sequences that fit in the step batch.

        While others decode, newcomers wait up to `max_batch_delay_ms` for company (or
        until they would fill half the free rows): every admission costs an encoder run.
        With step batching off, nothing joins a running decode: each request is alone.
        """
        rows = sum(w.item.width for w in self._active)
        head = self._pending.head()
        if self._active and head is not None:
            if not self.step_batching:
                return []
            waited_ms = (time.perf_counter() - head.enqueued) * 1000
            waiting = sum(w.item.width for w in self._pending)
            if waited_ms < self.limits.max_batch_delay_ms and waiting < (self.max_rows - rows) / 2:
                return []
        admitted: list[Waiting[Sequence]] = []
        while (head := self._pending.head()) and rows + head.item.width <= self.max_rows:
            if not self.step_batching and admitted:
                break
            admitted.append(self._pending.popleft())
            rows += head.item.width
        return admitted

    def decode_alone(
        self, texts: list[str], width: int = 1, max_len: int | None = None
    ) -> list[Decoded]:
        """Blocking: decode texts together without the loop (warm-up, tests, benchmarks)."""
        params = Seq2SeqParameters(beam_width=width, max_output_tokens=max_len)
        return self._decode(self.prepare(texts, params))

    def _decode(self, sequences: list[Sequence]) -> list[Decoded]:
        active = list(sequences)
        self.step(active, active)
        while active := [s for s in active if s.result is None]:
            self.step([], active)
        return [s.result for s in sequences]  # type: ignore[misc]

    # -- one step (worker thread) ---------------------------------------------------------

    def step(self, admitted: list[Sequence], active: list[Sequence]) -> list[Sequence]:
        """Encode the newcomers, run one decoder step for every row; return who finished."""
        if admitted:
            self._encode(admitted)
        key = tuple(s.serial for s in active)
        if key != self._batch_key:  # membership changed: rebuild the padded memory
            longest = max(len(s.ids) for s in active)
            rows = [(s, k) for s in active for k in range(s.width)]
            memory = np.zeros((len(rows), longest, active[0].memory.shape[1]), np.float32)
            mask = np.zeros((len(rows), longest), bool)
            for r, (s, _) in enumerate(rows):
                memory[r, : len(s.ids)] = s.memory
                mask[r, : len(s.ids)] = True
            self._memory, self._mask, self._batch_key = memory, mask, key
        tokens = np.concatenate([s.last for s in active])
        state = np.concatenate([s.state for s in active])
        logits, state, attention = self.decoder.run(
            None, {"token": tokens, "state": state, "memory": self._memory, "mask": self._mask}
        )
        best = logits.argmax(-1)  # what every greedy row takes, in one call
        done, r = [], 0
        for s in active:
            if s.width == 1:
                finished = self._advance_greedy(s, int(best[r]), state[r], attention[r])
            else:
                rows = slice(r, r + s.width)
                finished = self._advance(s, logits[rows], state[rows], attention[rows])
            r += s.width
            if finished:
                done.append(s)
        return done

    def _encode(self, sequences: list[Sequence]) -> None:
        lengths = np.array([len(s.ids) for s in sequences], np.int64)
        chars = np.full((len(sequences), int(lengths.max())), self.text.pad_id, np.int64)
        for row, s in enumerate(sequences):
            chars[row, : len(s.ids)] = s.ids
        memory, state = self.encoder.run(None, {"chars": chars, "lengths": lengths})
        for row, s in enumerate(sequences):
            k = s.width
            s.memory = memory[row, : len(s.ids)]
            s.state = np.repeat(state[row : row + 1], k, axis=0)
            s.scores = np.full(k, -np.inf, np.float32)
            s.scores[0] = 0.0  # every row starts equal: expand only the first
            s.finished = np.zeros(k, bool)
            s.last = np.full(k, self.bos_id, np.int64)
            s.history = np.full((k, 1), self.bos_id, np.int64)
            s.alignment = np.zeros((k, 0, len(s.ids)), np.float32)
            s.steps = []

    def _advance_greedy(
        self, s: Sequence, token: int, state: np.ndarray, attention: np.ndarray
    ) -> bool:
        """Greedy update (k = 1) without the beam's bookkeeping; True once finished."""
        s.state, s.last[0] = state[None], token
        if token != self.eos_id:
            s.steps.append((token, attention[: len(s.ids)]))
        if token != self.eos_id and len(s.steps) < s.max_len:
            return False
        ids = [t for t, _ in s.steps]
        weights = np.stack([w for _, w in s.steps]) if ids else np.zeros((0, len(s.ids)))
        self._finish(s, ids, weights, ended=token == self.eos_id)
        return True

    def _advance(
        self, s: Sequence, logits: np.ndarray, state: np.ndarray, attention: np.ndarray
    ) -> bool:
        """Beam update for one sequence; True once every row has finished (or max length)."""
        k, vocab = logits.shape
        shifted = logits - logits.max(-1, keepdims=True)
        logp = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))  # (k, V)
        logp[s.finished] = -np.inf
        logp[s.finished, self.eos_id] = 0.0  # a finished row only carries itself forward
        total = (s.scores[:, None] + logp).reshape(-1)  # (k * V,)
        best = np.argsort(-total, kind="stable")[:k]
        rows, tokens = best // vocab, best % vocab
        s.scores = total[best]
        s.state, s.last = state[rows], tokens
        s.history = np.concatenate([s.history[rows], tokens[:, None]], axis=1)
        weights = attention[rows, None, : len(s.ids)]
        s.alignment = np.concatenate([s.alignment[rows], weights], axis=1)
        s.finished = s.finished[rows] | (tokens == self.eos_id)
        if not s.finished.all() and s.history.shape[1] - 1 < s.max_len:
            return False
        top = int(np.argmax(s.scores))
        ids = s.history[top, 1:].tolist()
        ended = self.eos_id in ids
        n = ids.index(self.eos_id) if ended else len(ids)
        self._finish(s, ids[:n], s.alignment[top, :n], ended)
        return True

    def _finish(self, s: Sequence, ids: list[int], weights: np.ndarray, ended: bool) -> None:
        s.result = Decoded(self.text.decode(ids), ids, weights, truncated=not ended)
        s.memory = s.state = s.alignment = None  # free them: the result is all that is needed


def _logged(error: Exception) -> InternalError:
    """A decode step failed: a fault of ours, logged once; its callers get a 500."""
    log.error("a decode step failed", exc_info=error)
    return InternalError(f"decoding failed ({type(error).__name__}); see the log")
