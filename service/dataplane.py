"""The data plane: what every wire does, said once and in no wire's terms.

The HTTP routes (`service.api`) and the gRPC methods (`service.rpc`) are thin adapters: they
decode their message, call one method here, and encode the answer and the errors their way.
Here: which version a request means, inference around the model (loaded first if it loads
on demand, held, counted, timed), streams (sessions and Triton's sequences,
`service.streaming`), metadata, readiness, and repository control. Nothing here knows a
request or a status code.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any, TypeVar

import numpy as np

from contract.manifest import version_number
from service import __version__, tracing, workers
from service.codecs import OutputTensor
from service.errors import (
    ClientGone,
    Conflict,
    Gone,
    InputError,
    InternalError,
    NotFound,
    NotOffered,
    ServiceError,
)
from service.logs import note
from service.metrics import Metrics
from service.model_config import model_config
from service.protocol import ModelMetadata, RepositoryModel, ServerMetadata
from service.repository import ModelRepository
from service.sessions import Session, SessionBackend
from service.settings import Settings
from service.streaming import (
    Sequence,
    not_started,
    sequence_of,
    step,
    step_outputs,
    step_values,
    streaming,
    task_parameters,
)
from service.versions import ModelVersion

T = TypeVar("T")
STATELESS = "sequences: it is stateless (Triton's sequence parameters need a stateful model)"
UNEXPECTED = InternalError("an unexpected error")  # how a request that raised anything else counts
SERVER_NAME = "rnnserve"
EXTENSIONS = ["binary_tensor_data", "model_repository", "model_configuration", "statistics"]
PLATFORM = "onnxruntime_onnx"
REPOSITORY_STATES = {
    "ready": "READY", "loading": "LOADING", "failed": "UNAVAILABLE", "unloading": "UNLOADING",
    "unloaded": "UNAVAILABLE",
}  # fmt: skip
Work = Callable[[ModelVersion, float], Awaitable[T]]  # (version, seconds left) -> result


def parse_version(name: str, version: str) -> int:
    """Versions are positive integers; anything else names no version."""
    number = version_number(version)
    if number is None:
        raise NotFound(f"model {name!r} has no version {version!r}")
    return number


class DataPlane:
    """One per app: both wires' adapters hold the same one (same repository, same batchers)."""

    def __init__(self, repository: ModelRepository, metrics: Metrics, settings: Settings) -> None:
        self.repository = repository
        self.metrics = metrics
        self.settings = settings
        self.sessions: SessionBackend | None = None  # the app's lifespan opens and closes it

    # -- inference ---------------------------------------------------------------------------

    async def infer(
        self,
        name: str,
        version: int | None,
        timeout: float,
        work: Work[T],
        status_of: Callable[[ServiceError | None], str],
    ) -> tuple[ModelVersion, T]:
        """Run `work` on the version chosen (held until it ends so it cannot be retired under
        it; loaded first if it loads on demand, a wait that counts against `timeout`), with
        its request count, latency and the batch's spans; `work` gets the seconds left.
        Requests are counted by the status the wire answers: `status_of` an error, or of None
        for success."""
        started = time.perf_counter()
        mv = await self.repository.acquire(name, version, timeout)
        note(model=mv.name, version=mv.version)
        failed: ServiceError | None = UNEXPECTED
        try:
            result = await work(mv, timeout - (time.perf_counter() - started))
            failed = None
            tracing.record_batch(mv.name, mv.version)
        except ServiceError as error:
            failed = error
            if isinstance(error, ClientGone):
                self.metrics.disconnects.labels("waiting for the model").inc()
            raise
        finally:
            self.repository.release(mv)
            labels, seconds = (mv.name, str(mv.version)), time.perf_counter() - started
            self.metrics.requests.labels(*labels, status_of(failed)).inc()
            self.metrics.latency.labels(*labels).observe(seconds)
            mv.statistics.request(failed is None, seconds)
        return mv, result

    async def tensor_work(
        self,
        name: str,
        version: int | None,
        arrays: dict[str, np.ndarray],
        parameters: dict[str, Any],
    ) -> tuple[int | None, Work[list[OutputTensor]]]:
        """What a V2 infer runs, and on which version: a stateless inference, or a step of
        the sequence its parameters name (on the version the sequence started on)."""
        sequence = sequence_of(parameters)
        if sequence is None:
            return version, lambda mv, timeout: mv.infer(arrays, parameters, timeout)
        return await self._sequence_work(name, version, sequence, arrays, parameters)

    # -- streams: sessions and sequences (see service.streaming) -------------------------------

    def session_store(self) -> SessionBackend:
        """The session store, or why streams are off."""
        if self.sessions is None:
            raise NotOffered(
                f"streaming sessions and sequences are off: this server runs "
                f"{self.settings.workers} worker processes and keeps sessions in memory, where "
                "a step reaching another worker would not find its state (the operator sets "
                "RNNSERVE_SESSION_STORE=redis://...)"
            )
        return self.sessions

    async def open_session(self, name: str) -> tuple[ModelVersion, Session]:
        """A session on the default version, loaded first if it loads on demand."""
        mv = await self.repository.loaded_version(name, None)
        task = streaming(mv)
        state = task.encode_state(task.open_state())
        return mv, await self.session_store().create(mv.name, mv.version, state, task.state_bytes)

    async def still_served(self, session: Session) -> None:
        """The session's version must still be served; otherwise the session is gone."""
        mv = self.repository.models.get(session.model, {}).get(session.version)
        if mv is None or not (mv.servable or mv.state == "loading"):
            await self.session_store().unserved(session)

    def session_step(
        self,
        session: Session,
        values: list[Any],
        parameters: dict[str, Any],
        expect_steps: int | None,
    ) -> Work[tuple[dict[str, Any], int]]:
        """A session's step, run on its version: the task's answer and the steps seen."""

        async def work(mv: ModelVersion, timeout: float) -> tuple[dict[str, Any], int]:
            task = streaming(mv)
            checked = task.check_step(values, parameters)  # in full, before the state
            return await step(self.session_store(), session, task, checked, values, timeout,
                              expect_steps)  # fmt: skip

        return work

    async def _sequence_work(
        self,
        name: str,
        version: int | None,
        sequence: Sequence,
        arrays: dict[str, np.ndarray],
        parameters: dict[str, Any],
    ) -> tuple[int | None, Work[list[OutputTensor]]]:
        """A step of a Triton sequence: its session opened by `sequence_start` (a start for an
        open id restarts it), found otherwise (Triton's 400 if it is not open), stepped like
        any session, and closed after answering by `sequence_end`."""
        streaming(await self.repository.loaded_version(name, version), STATELESS)
        store = self.session_store()
        key = sequence.key(name)
        session: Session | None = None
        if not sequence.start:
            try:
                session = await store.get(name, key)
                await self.still_served(session)
            except (NotFound, Gone) as missing:
                raise not_started(sequence, name, missing, self.settings) from None
            if version is not None and version != session.version:
                raise InputError(
                    f"sequence {sequence} runs on version {session.version} of model {name!r}, "
                    f"not {version}",
                    "model_version",
                )
            version = session.version

        async def work(mv: ModelVersion, timeout: float) -> list[OutputTensor]:
            nonlocal session
            task = streaming(mv, STATELESS)
            values = step_values(mv.task.inputs, arrays, sequence)  # type: ignore[union-attr]
            checked = task.check_step(values, task_parameters(parameters))
            if session is None:  # in full before a start opens anything
                state = task.encode_state(task.open_state())
                session = await store.create(mv.name, mv.version, state, task.state_bytes, key)
            try:
                answer, _ = await step(store, session, task, checked, values, timeout)
            except (NotFound, Gone) as missing:  # ended or expired meanwhile
                raise not_started(sequence, name, missing, self.settings) from None
            if sequence.end:
                with suppress(NotFound, Gone):  # another request ended it first
                    await store.delete(mv.name, key, "ended")
            return step_outputs(mv.task.outputs, answer)  # type: ignore[union-attr]

        return version, work

    # -- metadata ----------------------------------------------------------------------------

    def server_metadata(self) -> ServerMetadata:
        return ServerMetadata(name=SERVER_NAME, version=__version__, extensions=EXTENSIONS)

    def shown(self, name: str, version: str | None) -> ModelVersion:
        """The version a metadata call is about: the one named, else the default one."""
        number = None if version is None else parse_version(name, version)
        return self.repository.live.shown(name, number)

    async def described(self, name: str, version: str | None) -> ModelVersion:
        """The version a metadata call is about, loaded if it loads on demand: its tensors are
        known once its task is built (Triton's clients ask for metadata, then infer)."""
        mv = self.shown(name, version)
        if mv.on_demand and mv.servable and mv.state != "ready":
            mv = await self.repository.loaded_version(name, mv.version)
        return mv

    async def model_metadata(self, name: str, version: str | None) -> ModelMetadata:
        mv = await self.described(name, version)
        versions = self.repository.live.versions_of(name)
        return ModelMetadata(
            name=name,
            versions=[str(v) for v, m in sorted(versions.items()) if m.servable],
            platform=PLATFORM,
            inputs=mv.task.inputs if mv.task else [],
            outputs=mv.task.outputs if mv.task else [],
            state=mv.state,
            error=mv.error,
        )

    async def model_config(self, name: str, version: str | None) -> dict[str, Any]:
        """Triton's model configuration extension (of a loaded version: its tensors)."""
        mv = await self.described(name, version)
        return model_config(mv, self.settings, self.repository.policy_for(name))

    def model_statistics(self, name: str | None, version: str | None) -> list[dict[str, Any]]:
        """Triton's statistics extension: every ready version, of one model, or one version
        (a failed or unloading version has none unless named)."""
        repository = self.repository
        number = None if version is None or name is None else parse_version(name, version)
        if name is None:
            chosen = [mv for versions in repository.models.values() for mv in versions.values()]
        elif number is None:
            chosen = list(repository.live.versions_of(name).values())
        else:
            chosen = [repository.live.shown(name, number)]
        return [
            mv.statistics.as_dict(mv.name, mv.version)
            for mv in sorted(chosen, key=lambda mv: (mv.name, mv.version))
            if mv.state == "ready" or number is not None
        ]

    # -- health ------------------------------------------------------------------------------

    def not_ready(self) -> list[str]:
        """Why the server is not ready (every worker counted); empty when it is."""
        return self.repository.not_ready() or workers.not_ready(self.settings)

    def problems(self) -> list[str]:
        """Failed versions of models that serve all the same: reported, not holding readiness."""
        return self.repository.problems()

    # -- repository control (Triton's repository extension) ----------------------------------

    async def repository_index(self) -> list[RepositoryModel]:
        """Every version on disk or in memory, with its state."""
        repository = self.repository
        index: dict[tuple[str, int], RepositoryModel] = {}
        for name, versions in (await asyncio.to_thread(repository.discover)).items():
            for version in versions:
                reason = "unloaded" if name in repository.unloaded else "not in the version policy"
                index[name, version] = RepositoryModel(
                    name=name, version=str(version), state="UNAVAILABLE", reason=reason
                )
        for name, versions in repository.models.items():
            for version, mv in versions.items():
                waits = "loads on its first request" if mv.state == "unloaded" else ""
                index[name, version] = RepositoryModel(
                    name=name,
                    version=str(version),
                    state=REPOSITORY_STATES[mv.state],
                    reason=mv.error or waits,
                )
        return [index[key] for key in sorted(index)]

    async def load_model(self, name: str) -> list[int]:
        self._one_worker()
        return await self.repository.load_model(name)

    async def unload_model(self, name: str) -> None:
        self._one_worker()
        await self.repository.unload_model(name)

    def _one_worker(self) -> None:
        """Load and unload change the worker that answers, not its siblings: refused with
        several."""
        count = self.settings.workers
        if count > 1:
            raise Conflict(
                f"this server runs {count} worker processes and a load or unload would change "
                "only the one that answers; change the model repository instead (every worker "
                "polls it), or run one worker per server"
            )
