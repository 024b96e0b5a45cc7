"""OS-level names for the server's own worker threads.

Python (before 3.14) names its threads only for itself: `top -H`, `ps -L`, py-spy and
/proc/<pid>/task/*/comm show every thread as `python`. Naming the batch and decode threads
lets an operator (and bench/cpusplit.py) tell them from onnxruntime's pool threads and the
event loop (the main thread)."""

from __future__ import annotations

import contextlib
import ctypes
import sys

PR_SET_NAME = 15  # prctl(2)


def name_os_thread(name: str) -> None:
    """Give the calling thread `name` (cut to 15 bytes, the kernel's limit); Linux only,
    and a no-op wherever it cannot be done."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)
