"""Readiness with several workers counts the ready marks of live worker processes only."""

from __future__ import annotations

import os
import subprocess
import sys

from service import workers
from service.settings import Settings


def test_ready_once_every_live_worker_has_marked_itself(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    settings = Settings(workers=2)
    assert workers.not_ready(settings) == ["0 of 2 worker processes have loaded their models"]
    (tmp_path / f"ready-{os.getpid()}").touch()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
    )
    (tmp_path / f"ready-{int(dead.stdout)}").touch()  # a worker that has exited
    assert workers.not_ready(settings) == ["1 of 2 worker processes have loaded their models"]
    (tmp_path / f"ready-{os.getppid()}").touch()
    assert workers.not_ready(settings) == []


def test_one_worker_needs_no_marks(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    assert workers.not_ready(Settings(workers=1)) == []
