"""Where the CPU went during one benchmark cell, read from /proc (Linux).

Each thread's user + system time comes from /proc/<pid>/task/<tid>/stat; a cell's figure is
the difference between a reading before and one after, over the cell's wall time, in cores
(1.0 = one core busy the whole cell). Threads are told apart by their names: rnnserve names
its batch threads (`rnnserve-batch`), gRPC's core names its own, and onnxruntime's pool
threads keep the process's name. A peer server's processes (a supervisor, workers, Triton's
backend stub) are read the same way and summed per process. The load generator's time is the
bench's waited-for children's (`RUSAGE_CHILDREN`), and the machine's busy time comes from
/proc/stat, so whatever else ran on the shared cores shows as "other processes".
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1


@dataclass(frozen=True)
class Thread:
    pid: int
    tid: int
    name: str
    cpu_s: float


def threads(pid: int) -> list[Thread]:
    """Every thread of process `pid` with its CPU time so far; [] once it is gone."""
    found = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except FileNotFoundError:
        return []
    for task in tasks:
        try:
            stat = (task / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended meanwhile
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        # Fields 14 and 15 of proc(5) (utime, stime), counted from the state (field 3).
        found.append(Thread(pid, int(task.name), name, (int(fields[11]) + int(fields[12])) / TICK))
    return found


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (a server's workers, Triton's stubs)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def machine_busy_s() -> float:
    """CPU seconds all cores spent outside idle and iowait since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / TICK


def rnnserve_role(thread: Thread) -> str:
    """An rnnserve thread's job: the event loop is the main thread."""
    if thread.tid == thread.pid:
        return "event loop"
    if thread.name.startswith("rnnserve-batch"):
        return "batch thread"
    if thread.name.startswith("rnnserve-"):
        return "other"
    if thread.name.startswith(("grpc", "default-execut", "resolver-exec", "timer_manager")):
        return "grpc"
    return "onnxruntime"


def by_process(root: int) -> Callable[[Thread], str]:
    """For a peer: each thread counted under its process's name (peers' threads are not named
    consistently), for `root` and the processes below it."""
    names = {pid: process_name(pid) for pid in descendants(root)}
    return lambda thread: names.get(thread.pid, str(thread.pid))


def process_name(pid: int) -> str:
    """What a process runs: its name (`tritonserver`), or for a Python process its script or
    module (`triton_model.py`, `mlserver`), or `python -c` (a multiprocessing child)."""
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        argv = [a.decode(errors="replace") for a in
                Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]  # fmt: skip
    except FileNotFoundError:
        return str(pid)
    if not comm.startswith("python"):
        return comm
    for i, arg in enumerate(argv[1:], 1):
        if arg == "-m" and i + 1 < len(argv):
            return argv[i + 1]
        if arg == "-c":
            return "python -c"
        if not arg.startswith("-"):
            return Path(arg).name
    return comm


@dataclass
class Split:
    """Cores used during a cell, by role, plus the load generator and everything else."""

    seconds: float
    roles: dict[str, float] = field(default_factory=dict)
    load_generator: float = 0.0
    machine: float = 0.0

    @property
    def server(self) -> float:
        return sum(self.roles.values())

    @property
    def other_processes(self) -> float:
        return max(0.0, self.machine - self.server - self.load_generator)

    def as_dict(self) -> dict:
        return {
            "roles": self.roles,
            "server": self.server,
            "load_generator": self.load_generator,
            "other_processes": self.other_processes,
            "machine": self.machine,
        }


def _by_role(pids: list[int], role: Callable[[Thread], str]) -> dict[tuple[int, int], tuple]:
    return {(t.pid, t.tid): (role(t), t.cpu_s) for pid in pids for t in threads(pid)}


@contextmanager
def measure(
    pid: int, role: Callable[[Thread], str] = rnnserve_role, tree: bool = False
) -> Iterator[Split]:
    """Fill a `Split` with the cores each role of server `pid` (and, with `tree`, of its child
    processes) used while the block ran, and the cores of children the block waited for."""
    pids = descendants(pid) if tree else [pid]
    split = Split(seconds=0.0)
    before = _by_role(pids, role)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy, started = machine_busy_s(), time.perf_counter()
    yield split
    split.seconds = wall = time.perf_counter() - started
    after = _by_role(pids, role)
    for key, (name, cpu) in after.items():
        spent = cpu - before.get(key, (name, 0.0))[1]
        split.roles[name] = split.roles.get(name, 0.0) + spent / wall
    done = resource.getrusage(resource.RUSAGE_CHILDREN)
    split.load_generator = (
        done.ru_utime + done.ru_stime - children.ru_utime - children.ru_stime
    ) / wall
    split.machine = (machine_busy_s() - busy) / wall


def limit(rps: float, split: Split, loop_role: str | None = "event loop") -> dict:
    """What the shares say about the ceiling of this row on this machine.

    CPU per request of the server (all roles) plus the load generator: at most
    `CORES / that` requests per second if nothing else ran. A single event loop can in
    addition carry at most `1 / its CPU per request`. The combined limit is the lower."""
    if rps <= 0:
        return {}
    per_request = (split.server + split.load_generator) / rps
    limits = {"cores": CORES / per_request}
    if loop_role and split.roles.get(loop_role):
        limits["event loop"] = 1 / (split.roles[loop_role] / rps)
    bound = min(limits, key=limits.get)
    return {
        "combined_limit": limits[bound],
        "bound_by": bound,
        "headroom": 1 - rps / limits[bound],
        "server_cpu_us_per_request": split.server / rps * 1e6,
    }
