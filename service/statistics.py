"""Triton's statistics extension: per model version, counted where the time is spent.

Requests are counted when they finish (success or failure, with their whole time in the
server); instances and batches when the batcher or the decode loop runs them, with the run
split by `service.phases` into input conversion, `session.run` and output conversion. Queue
and compute figures count instances (a V2 request of batch 4 counts 4), so for requests of one
instance, as `perf_analyzer` sends by default, every count equals the request count.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from service.batching import BatchStats

NS = 1_000_000_000


@dataclass(slots=True)
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, seconds: float, count: int = 1) -> None:
        self.count += count
        self.ns += round(seconds * NS)

    def as_dict(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


@dataclass(slots=True)
class BatchDurations:
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


@dataclass(slots=True)
class Statistics:
    """One version's counters, updated on the event loop only."""

    inference_count: int = 0
    execution_count: int = 0
    last_inference_ms: int = 0
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    batches: dict[int, BatchDurations] = field(default_factory=dict)

    def request(self, ok: bool, seconds: float) -> None:
        (self.success if ok else self.fail).add(seconds)
        self.last_inference_ms = time.time_ns() // 1_000_000

    def batch(self, stats: BatchStats) -> None:
        """One run of the model: `stats.queue_seconds` has one entry per instance it admitted.

        A seq2seq decode step admits the newcomers and runs every sequence in flight, so its
        compute time is shared by `stats.size` rows rather than by the newcomers alone.
        """
        admitted = len(stats.queue_seconds)
        self.inference_count += admitted
        self.execution_count += 1
        for seconds in stats.queue_seconds:
            self.queue.add(seconds)
        phases = stats.phases
        for total, seconds in (
            (self.compute_input, phases.input_s),
            (self.compute_infer, phases.infer_s),
            (self.compute_output, phases.output_s),
        ):
            total.count += admitted
            total.ns += round(seconds * stats.size * NS)
        per_size = self.batches.setdefault(stats.size, BatchDurations())
        per_size.compute_input.add(phases.input_s)
        per_size.compute_infer.add(phases.infer_s)
        per_size.compute_output.add(phases.output_s)

    def as_dict(self, name: str, version: int) -> dict[str, Any]:
        """Triton's `ModelStatistics` as JSON (gRPC parses the same dict into its message)."""
        empty = Duration().as_dict()
        return {
            "name": name,
            "version": str(version),
            "last_inference": self.last_inference_ms,
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "inference_stats": {
                "success": self.success.as_dict(),
                "fail": self.fail.as_dict(),
                "queue": self.queue.as_dict(),
                "compute_input": self.compute_input.as_dict(),
                "compute_infer": self.compute_infer.as_dict(),
                "compute_output": self.compute_output.as_dict(),
                "cache_hit": empty,
                "cache_miss": empty,
            },
            "batch_stats": [
                {
                    "batch_size": size,
                    "compute_input": durations.compute_input.as_dict(),
                    "compute_infer": durations.compute_infer.as_dict(),
                    "compute_output": durations.compute_output.as_dict(),
                }
                for size, durations in sorted(self.batches.items())
            ],
        }
