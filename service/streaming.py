"""Streams: a task's state kept between a client's steps, whichever wire the steps come by.

A session (`/v1/models/{name}/sessions`, its id issued by the store) and a Triton sequence
(`sequence_id`, `sequence_start`, `sequence_end` on V2 infer over HTTP or gRPC, its id chosen
by the client) are one thing: a state in the session store (memory, or Redis shared by
replicas), stepped by one loop here. Steps queue in their version's batcher like any request,
so steps of different streams run as one batch; steps of one stream are serialised by the
store (a lock in memory, a compare-and-set on the step count in Redis) and only a step that
succeeds replaces the state.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import orjson

from service.codecs import NUMPY, OutputTensor
from service.errors import Conflict, Gone, InputError, NotFound, Overloaded
from service.protocol import MetadataTensor
from service.sessions import Session, SessionBackend
from service.tasks.base import StreamingTask
from service.versions import ModelVersion

MAX_TURNS = 32  # steps that lost a compare-and-set to another step of the same stream, in a row
LAST = struct.Struct("<q16s")  # a session's last step: the count before it, its values' digest
SEQUENCE = ("sequence_id", "sequence_start", "sequence_end")
# Parameters of the protocol rather than of the model: a step's task never sees them.
PROTOCOL = frozenset(
    {*SEQUENCE, "binary_data_output", "priority", "timeout", "triton_enable_empty_final_response"}
)
MAX_ID_CHARS = 256
UINT64_MAX = 2**64 - 1
LENGTHS = "lengths"


def streaming(mv: ModelVersion, what: str = "streaming sessions") -> StreamingTask:
    """The version's task if it keeps streams, else the input error saying it does not."""
    if not isinstance(mv.task, StreamingTask):
        task = mv.manifest.task if mv.manifest else "unknown"
        raise InputError(f"model {mv.name!r} ({task}) does not keep {what}")
    return mv.task


async def step(
    store: SessionBackend,
    session: Session,
    task: StreamingTask,
    checked: Any,
    values: list[Any],
    timeout: float,
    expect_steps: int | None = None,
) -> tuple[dict[str, Any], int]:
    """One step on `checked` (the task's check of `values`): the answer and the steps seen.

    With `expect_steps`, the step applies only if the stream has seen that many values, and a
    retry of a step already applied gets its answer back instead of feeding the values twice.
    """
    added = len(values)
    digest = hashlib.blake2b(_as_bytes(values), digest_size=16).digest()
    for _ in range(MAX_TURNS):
        async with store.turn(session) as now:
            if expect_steps is not None and expect_steps != now.steps:
                return _replay(now, expect_steps, added, digest), now.steps
            answer, state = await task.step(_decoded(task, now), checked, timeout)
            last = LAST.pack(now.steps, digest) + orjson.dumps(answer)
            steps = await store.commit(now, task.encode_state(state), added, last)
        if steps is not None:
            return answer, steps
        session = await store.get(session.model, session.id)  # another step came first
    raise Overloaded(
        f"session {session.id!r} is being stepped by {MAX_TURNS} other requests at once; "
        "send one step at a time"
    )


def _decoded(task: StreamingTask, session: Session) -> Any:
    """The session's state as its task reads it; bytes it cannot read (kept by a release that
    wrote another layout) end the session with 410 rather than fail every step."""
    try:
        return task.decode_state(session.state)
    except ValueError as error:
        raise Gone(
            f"session {session.id!r} holds a state this server cannot read ({error}); "
            "open a new session",
            "unreadable",
        ) from None


def _as_bytes(values: list[Any]) -> bytes:
    """The values as bytes to digest: JSON, or their repr for what JSON here cannot say (an
    integer past 64 bits that a task took as a number)."""
    try:
        return orjson.dumps(values)
    except TypeError:
        return repr(values).encode()


def _replay(session: Session, expect: int, added: int, digest: bytes) -> dict[str, Any]:
    """The answer to a retried step that was applied already, or 409 if it is not one."""
    last = session.last or bytes(LAST.size)
    if session.steps == expect + added and LAST.unpack_from(last) == (expect, digest):
        return orjson.loads(last[LAST.size :])
    raise Conflict(
        f"session {session.id!r} has seen {session.steps} values, not {expect}: another "
        "client steps it, or the values differ from the step being retried"
    )


# -- Triton's sequences ------------------------------------------------------------------------


class Limits(Protocol):
    """The store's limits a client is told about (the server's Settings have them)."""

    session_ttl_s: float
    max_sessions: int


@dataclass(frozen=True, slots=True)
class Sequence:
    """A request's sequence parameters, checked."""

    id: int | str
    start: bool
    end: bool

    def key(self, model: str) -> str:
        """Its session id: scoped by model, an integer id apart from the same digits as a
        string, and never one the store issues (those are URL-safe base64)."""
        kind = "u" if isinstance(self.id, int) else "s"
        return f"sequence~{model}~{kind}~{self.id}"

    def __str__(self) -> str:
        return str(self.id) if isinstance(self.id, int) else repr(self.id)


def sequence_of(parameters: dict[str, Any]) -> Sequence | None:
    """The sequence a V2 request steps, or None when it names none (InputError for parameters
    of the wrong type: `sequence_id` an unsigned integer or a string, the flags booleans)."""
    if not any(name in parameters for name in SEQUENCE):
        return None
    given = parameters.get("sequence_id")
    if isinstance(given, bool) or not isinstance(given, int | str):
        raise InputError(
            "parameters.sequence_id must be an unsigned integer or a string naming the "
            f"sequence, got {given!r}",
            "parameters.sequence_id",
        )
    if isinstance(given, int) and not 1 <= given <= UINT64_MAX:
        raise InputError(
            f"parameters.sequence_id {given} is not a sequence: integer ids are 1..2**64-1",
            "parameters.sequence_id",
        )
    if isinstance(given, str) and not 1 <= len(given) <= MAX_ID_CHARS:
        raise InputError(
            f"parameters.sequence_id must be 1..{MAX_ID_CHARS} characters, got {len(given)}",
            "parameters.sequence_id",
        )
    flags = {}
    for name in ("sequence_start", "sequence_end"):
        flag = parameters.get(name, False)
        if not isinstance(flag, bool):
            raise InputError(
                f"parameters.{name} must be true or false, got {flag!r}", f"parameters.{name}"
            )
        flags[name] = flag
    return Sequence(given, flags["sequence_start"], flags["sequence_end"])


def not_started(
    sequence: Sequence, model: str, missing: NotFound | Gone, limits: Limits
) -> InputError:
    """Triton's answer to a step of a sequence that is not open, and why it is not."""
    reason = missing.reason if isinstance(missing, Gone) else None
    why = {
        "ended": "it ended (a request said sequence_end)",
        "expired": f"it expired after {limits.session_ttl_s:g} s idle",
        "evicted": f"it was evicted (more than {limits.max_sessions} sequences and sessions open)",
        "unserved": "its model version is no longer served",
        "restarted": "it was restarted",
        "deleted": "it was deleted",
    }.get(reason or "", "it is not open")
    return InputError(
        f"inference request for sequence {sequence} to model {model!r} must specify the START "
        f"flag on the first request of the sequence ({why})",
        "parameters.sequence_start",
    )


def step_values(
    inputs: list[MetadataTensor], arrays: dict[str, np.ndarray], sequence: Sequence
) -> list[Any]:
    """A step's values from its V2 tensors: one row of the task's first input ([1, n] or
    [n]), cut to `lengths` ([1]) when the task takes that input too (as the forecasters do)."""
    names = [t.name for t in inputs]
    first = names[0]
    allowed = {first} | ({LENGTHS} if LENGTHS in names[1:] else set())
    if first not in arrays or not set(arrays) <= allowed:
        raise InputError(
            f"a step of sequence {sequence} takes input {first!r} (one row, [1, n])"
            + (f" with optional {LENGTHS!r} ([1])" if LENGTHS in allowed else "")
            + f"; got {sorted(arrays)}"
        )
    values = arrays[first]
    if values.ndim == 2 and values.shape[0] == 1:
        values = values[0]
    if values.ndim != 1 or values.size == 0:
        raise InputError(
            f"input {first!r} of a step of sequence {sequence} must be one row of values, "
            f"[1, n] with n >= 1; got shape {list(arrays[first].shape)}",
            f"input {first!r}",
        )
    lengths = arrays.get(LENGTHS)
    if lengths is not None:
        if lengths.size != 1 or lengths.dtype.kind not in "iu":
            raise InputError(f"input {LENGTHS!r} of a step must be one integer ([1])")
        n = int(lengths.reshape(-1)[0])
        if not 1 <= n <= values.size:
            raise InputError(f"{LENGTHS}[0] = {n} is not in 1..{values.size}")
        values = values[:n]
    return values.tolist()


def step_outputs(outputs: list[MetadataTensor], answer: dict[str, Any]) -> list[OutputTensor]:
    """A step's answer as V2 tensors: each of the task's outputs as one row (a batch of one)
    of its datatype; one the answer leaves out (a forecaster's attention, unless asked) is
    an empty row, so a client asking for every output the model declares gets each."""
    return [
        OutputTensor(
            t.name,
            t.datatype,
            np.asarray(answer.get(t.name, []), NUMPY.get(t.datatype))[None],
        )
        for t in outputs
    ]


def task_parameters(parameters: dict[str, Any]) -> dict[str, Any]:
    """A step's parameters without the protocol's own."""
    return {k: v for k, v in parameters.items() if k not in PROTOCOL}
