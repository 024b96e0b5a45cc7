"""onnxruntime sessions: execution providers and CPU tuning come from the settings.

Memory per loaded graph stays close to the graph's bytes: one session per graph, no thread
pool of its own (one intra-op thread: the run's calling thread), and the scratch memory of runs
in one arena that every session of the process shares, instead of an arena per session that
keeps the peak of every batch shape it ever ran.
"""

from __future__ import annotations

import functools
from pathlib import Path

import onnxruntime as ort

from service.settings import Settings

_OPTIMIZATION = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def providers_for(choice: str) -> list[str]:
    """`auto` takes CUDA when this onnxruntime build offers it; `cuda` insists on it."""
    available = ort.get_available_providers()
    if choice == "cpu":
        return [CPU]
    if choice == "cuda" and CUDA not in available:
        raise RuntimeError(f"CUDA was requested but onnxruntime offers only {available}")
    return [CUDA, CPU] if CUDA in available else [CPU]


def create_inference_session(graph: Path, settings: Settings) -> tuple[ort.InferenceSession, str]:
    """A session and the provider it really got (CUDA can fall back to CPU silently)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = _OPTIMIZATION[settings.graph_optimization]
    options.intra_op_num_threads = settings.intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    spin = "1" if settings.thread_spinning else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spin)
    options.add_session_config_entry("session.inter_op.allow_spinning", spin)
    _share_cpu_arena()
    options.add_session_config_entry("session.use_env_allocators", "1")
    session = ort.InferenceSession(
        str(graph), sess_options=options, providers=providers_for(settings.providers)
    )
    return session, session.get_providers()[0]


@functools.cache
def _share_cpu_arena() -> None:
    """Register, once per process, the CPU arena that every session's runs allocate from."""
    cpu = ort.OrtMemoryInfo(
        "Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT
    )
    ort.create_and_register_allocator(cpu, None)
