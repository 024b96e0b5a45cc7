"""Two replicas behind a real HAProxy (round robin, no stickiness) share sessions in a real
redis-server; one is killed and restarted mid-run: no session lost, every forecast as one server's.

The bigger run is `python -m bench.replicas` (figures in bench/README.md)."""

from __future__ import annotations

import pytest

from bench.replicas import run
from tests.forecast_helpers import tiny_forecast_repository
from tests.scaleout import MISSING, have_haproxy, have_redis

pytestmark = pytest.mark.skipif(not (have_redis() and have_haproxy()), reason=f"needs {MISSING}")


def test_sessions_survive_a_replica_crash_and_match_a_single_server():
    sessions, steps = 24, 12
    figures, got, want = run(
        tiny_forecast_repository(), "tiny-forecast", sessions, steps, clients=8, kill_at=0.3
    )
    assert figures.restarts == 1
    assert figures.failed_steps == 0  # a step that failed on the killed replica, retried, passed
    assert figures.lost_sessions == 0
    assert figures.steps == sessions * steps
    assert figures.mismatches == 0 and figures.max_rel_diff <= 1e-5
    assert all(len(got[key]) == steps and None not in got[key] for key in range(sessions))
    assert len(want) == sessions
    a, b = figures.served_by.values()
    assert a > 0 and b > 0  # both replicas answered steps (b after its restart)
