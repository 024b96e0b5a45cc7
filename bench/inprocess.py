"""The in-process onnxruntime limit: sequences/s of session.run alone, by batch size."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bench.payloads import texts, texts_of_lengths
from contract.manifest import Manifest
from contract.words import PAD_ID, Vocabulary, tokenize
from service.tasks.classify import length_groups


def latest_version(model_dir: Path) -> Path:
    return max((p for p in model_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def load(
    folder: Path,
    threads: int = 2,
    graph: str = "model.onnx",
    level: str = "all",
    spinning: bool = True,
):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    session = ort.InferenceSession(str(folder / graph), options, providers=["CPUExecutionProvider"])
    manifest = Manifest.read(folder)
    return session, Vocabulary.load(folder / manifest.preprocessing.vocab_file)


def encode(vocab: Vocabulary, batch: list[str]) -> dict[str, np.ndarray]:
    ids = [vocab.encode(tokenize(t)) for t in batch]
    lengths = np.array([len(x) for x in ids], np.int64)
    tokens = np.full((len(ids), lengths.max()), PAD_ID, np.int64)
    for row, x in enumerate(ids):
        tokens[row, : len(x)] = x
    return {"tokens": tokens, "lengths": lengths}


def sequences_per_second(session, feeds: list[dict[str, np.ndarray]], seconds: float) -> float:
    session.run(None, feeds[0])
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for feed in feeds:
            session.run(None, feed)
            done += len(feed["lengths"])
    return done / (time.perf_counter() - started)


def batch_sweep(
    folder: Path,
    sizes=(1, 8, 16, 32, 64),
    tokens: int = 64,
    threads: int = 2,
    seconds: float = 2.0,
    pool: list[str] | None = None,
) -> dict[int, float]:
    """Sequences/s by batch size over `pool` (default: 256 texts of `tokens` tokens), each batch
    `b` consecutive texts padded to its longest: with real sentences, the real-length limit."""
    session, vocab = load(folder, threads)
    pool = pool or texts(256, tokens)
    return {
        b: sequences_per_second(
            session,
            [encode(vocab, pool[i : i + b]) for i in range(0, len(pool) - b + 1, b)],
            seconds,
        )
        for b in sizes
    }


def padded_vs_grouped(folder: Path, batch: int = 32, seconds: float = 3.0, threads: int = 2):
    """Lengths uniform in 8..256: one padded batch versus length groups of bounded waste."""
    import random

    session, vocab = load(folder, threads)
    rng = random.Random(0)
    batches = [
        texts_of_lengths([rng.randint(8, 256) for _ in range(batch)], seed=i) for i in range(8)
    ]
    padded = [encode(vocab, b) for b in batches]
    grouped = []
    for b in batches:
        lengths = [len(tokenize(t)) for t in b]
        grouped += [encode(vocab, [b[i] for i in g]) for g in length_groups(lengths, batch, 0.25)]
    waste = [1 - f["lengths"].sum() / f["tokens"].size for f in padded]
    return {
        "padded": sequences_per_second(session, padded, seconds),
        "grouped": sequences_per_second(session, grouped, seconds),
        "padded_waste": float(np.mean(waste)),
        "groups_per_batch": len(grouped) / len(batches),
    }


def tuning(folder: Path, tokens: int = 64, seconds: float = 1.5) -> dict[str, dict[int, float]]:
    """Sequences/s at batch 1 and 16 for graph optimisation levels, threads and spinning."""
    pool = texts(256, tokens)
    results = {}
    for label, kwargs in (
        ("all, 2 threads, spinning", {"threads": 2}),
        ("all, 2 threads, no spinning", {"threads": 2, "spinning": False}),
        ("all, 1 thread", {"threads": 1}),
        ("basic, 2 threads", {"threads": 2, "level": "basic"}),
        ("disable, 2 threads", {"threads": 2, "level": "disable"}),
    ):
        session, vocab = load(folder, **kwargs)
        results[label] = {
            b: sequences_per_second(
                session, [encode(vocab, pool[i : i + b]) for i in range(0, 256 - b + 1, b)], seconds
            )
            for b in (1, 16)
        }
    return results
