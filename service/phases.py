"""Where a batch's time goes: converting inputs, inside onnxruntime, converting outputs.

A run function (a task's `run`, a seq2seq step) prepares tensors, calls one or more sessions
and unpacks their outputs. Sessions made by `service.runtime` note when each of their runs
starts and ends on this thread's clock, so `timed` can split a run into the time before the
first session run (input), from its start to the end of the last (infer), and after (output),
with no timing code in any task.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Phases:
    input_s: float = 0.0
    infer_s: float = 0.0
    output_s: float = 0.0

    @property
    def total_s(self) -> float:
        return self.input_s + self.infer_s + self.output_s


NO_PHASES = Phases()


class _Clock(threading.local):
    first_start: float | None = None
    last_end: float | None = None


_clock = _Clock()


def session_ran(started: float, ended: float) -> None:
    """Called by a session after each run, on the thread that ran it."""
    if _clock.first_start is None:
        _clock.first_start = started
    _clock.last_end = ended


def timed(run: Callable[..., T], *args: Any) -> tuple[T, Phases]:
    """Call `run(*args)` and split its time; a run with no session run counts as input."""
    _clock.first_start = _clock.last_end = None
    began = time.perf_counter()
    try:
        result = run(*args)
    finally:
        ended = time.perf_counter()
        first, last = _clock.first_start, _clock.last_end
        _clock.first_start = _clock.last_end = None
    if first is None or last is None:
        return result, Phases(input_s=ended - began)
    return result, Phases(first - began, last - first, ended - last)


class TimedSession:
    """An onnxruntime session whose runs are noted on the clock; everything else delegates."""

    __slots__ = ("_session",)

    def __init__(self, session: Any) -> None:
        self._session = session

    def run(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return self._session.run(*args, **kwargs)
        finally:
            session_ran(started, time.perf_counter())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)
