"""Prometheus metrics of one app (own registry, so several apps can live in one process)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

from service.batching import BatchStats

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
COLD_START_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30)


@dataclass(frozen=True, slots=True)
class DecodeStepStats(BatchStats):
    """One seq2seq decoder step: `size` is its rows (beam rows of every sequence in flight)."""


class Metrics:
    def __init__(self) -> None:
        self.prometheus = CollectorRegistry()  # the series /metrics shows (not the task registry)
        labels = ("model", "version")
        self.requests = Counter(
            "rnnserve_requests",
            "Prediction requests by outcome.",
            (*labels, "status"),
            registry=self.prometheus,
        )
        self.latency = Histogram(
            "rnnserve_request_seconds",
            "Prediction request latency.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.prometheus,
        )
        self.queue_time = Histogram(
            "rnnserve_queue_seconds",
            "Time a sequence waited to run.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.prometheus,
        )
        self.inference_time = Histogram(
            "rnnserve_inference_seconds",
            "Session run per batch.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.prometheus,
        )
        self.batch_size = Histogram(
            "rnnserve_batch_size",
            "Sequences per batch.",
            labels,
            buckets=BATCH_BUCKETS,
            registry=self.prometheus,
        )
        self.decode_step_rows = Histogram(
            "rnnserve_decode_step_rows",
            "Decoder rows per seq2seq decode step.",
            labels,
            buckets=BATCH_BUCKETS,
            registry=self.prometheus,
        )
        self.disconnects = Counter(
            "rnnserve_client_disconnects",
            "Clients that hung up before their answer, by what the server was doing.",
            ("stage",),
            registry=self.prometheus,
        )
        self._queue_depths: Callable[[], Iterable[tuple[str, str, int]]] = list
        self.prometheus.register(_QueueDepth(lambda: self._queue_depths()))
        self._shared_depths: Gauge | None = None  # several workers: see share_queue_depths
        self._shared: set[tuple[str, str]] = set()
        self.ready = Gauge(
            "rnnserve_model_ready",
            "1 when a version is loaded and serves, else 0.",
            labels,
            registry=self.prometheus,
        )
        # Loading on demand (a budget): series per model, not per version, so that they
        # outlive the versions they count.
        self.loads = Counter(
            "rnnserve_model_loads",
            "Version loads by outcome (loaded, failed).",
            ("model", "outcome"),
            registry=self.prometheus,
        )
        self.evictions = Counter(
            "rnnserve_model_evictions",
            "Idle versions unloaded to make room for another (they load again on demand).",
            ("model",),
            registry=self.prometheus,
        )
        self.cold_start = Histogram(
            "rnnserve_cold_start_seconds",
            "How long a request waited for its model version to load on demand.",
            buckets=COLD_START_BUCKETS,
            registry=self.prometheus,
        )

    def share_queue_depths(self) -> None:
        """With several workers a scrape reads every worker's files, not this process's queues:
        write this worker's depths there (summed over live workers), retired versions as 0."""
        if self._shared_depths is None:
            self._shared_depths = Gauge(
                "rnnserve_queue_depth",
                "Sequences waiting to run.",
                ("model", "version"),
                multiprocess_mode="livesum",
                registry=None,  # only the files, where the multiprocess collector reads it
            )
        now = {(model, version): depth for model, version, depth in self._queue_depths()}
        for labels in self._shared - now.keys():
            self._shared_depths.labels(*labels).set(0)
        for labels, depth in now.items():
            self._shared_depths.labels(*labels).set(depth)
        self._shared = set(now)

    def watch_queues(self, depths: Callable[[], Iterable[tuple[str, str, int]]]) -> None:
        """Queue depths are read when scraped, from whatever serves then: nothing holds on to
        a retired version."""
        self._queue_depths = depths

    def forget(self, model: str, version: int) -> None:
        """Drop every series of a retired version."""
        labels = {"model": model, "version": str(version)}
        for metric in self._per_version:
            metric.remove_by_labels(labels)

    @property
    def _per_version(self) -> list[MetricWrapperBase]:
        return [
            self.requests,
            self.latency,
            self.queue_time,
            self.inference_time,
            self.batch_size,
            self.decode_step_rows,
            self.ready,
        ]

    def batch_observer(self, model: str, version: int):
        """A callback for one version's batcher."""
        labels = (model, str(version))
        queue_time = self.queue_time.labels(*labels)
        inference_time = self.inference_time.labels(*labels)
        batch_size = self.batch_size.labels(*labels)
        decode_step_rows = self.decode_step_rows.labels(*labels)

        def observe(stats: BatchStats) -> None:
            for seconds in stats.queue_seconds:
                queue_time.observe(seconds)
            inference_time.observe(stats.run_seconds)
            rows = decode_step_rows if isinstance(stats, DecodeStepStats) else batch_size
            rows.observe(stats.size)

        return observe


class _QueueDepth(Collector):
    def __init__(self, depths: Callable[[], Iterable[tuple[str, str, int]]]) -> None:
        self._depths = depths

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "rnnserve_queue_depth", "Sequences waiting to run.", labels=("model", "version")
        )
        for model, version, depth in self._depths():
            family.add_metric((model, version), depth)
        yield family
