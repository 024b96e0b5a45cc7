"""`python -m bench.user_models`: a user's classifier without attention against ours, one server.

The user's model is our sst2-gru network (same sizes, random weights: speed does not depend on
them) behind a user's forward that returns logits only, published through `export.api` as any
user's module is. Both models sit in one server and are measured in alternation (c=1, c=64,
two rounds), so the comparison says whether a user's model gets the same batching.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import torch
from torch import nn

from bench.http import throughput_table, wrk
from bench.inprocess import latest_version
from bench.payloads import write_bodies
from contract.text import TokenVocabulary
from export.api import publish_classifier
from model_src.classifier import ClassifierConfig, TextClassifier
from tests.live_server import live_server

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
OURS = "sst2-gru"


class LogitsOnly(nn.Module):
    """A user's forward: (tokens, lengths) -> logits, no attention output."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.model(tokens, lengths)[0]


def publish_user_model(ours: Path, repository: Path) -> str:
    manifest = json.loads((ours / "manifest.json").read_text())
    arch, prep = manifest["architecture"], manifest["preprocessing"]
    torch.manual_seed(0)
    network = TextClassifier(
        ClassifierConfig(
            vocab_size=prep["vocab_size"],
            num_classes=len(manifest["labels"]),
            cell=arch["cell"],
            embedding_dim=arch["embedding_dim"],
            hidden_size=arch["hidden_size"],
            num_layers=arch["num_layers"],
            bidirectional=arch["bidirectional"],
            attention_size=arch["attention_size"],
            dropout=0.0,
        )
    )
    publish_classifier(
        LogitsOnly(network),
        vocab=TokenVocabulary.read_tokens(ours / prep["vocab_file"]),
        labels=manifest["labels"],
        name="user-gru",
        repository=repository,
        lowercase=prep["lowercase"],
        max_tokens=prep["max_tokens"],
    )
    return "user-gru"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=8)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    levels = [1, 64]
    ours = latest_version(ROOT / "models" / OURS)
    bodies = write_bodies(RESULTS, tokens=args.tokens)
    with tempfile.TemporaryDirectory() as work:
        repository = Path(work)
        shutil.copytree(ours, repository / OURS / "1")
        user = publish_user_model(ours, repository)
        runs: dict[str, dict[int, list[dict]]] = {m: {c: [] for c in levels} for m in (OURS, user)}
        with live_server(repository, grpc_port="0") as url:
            for model in runs:
                wrk(url, f"/v1/models/{model}:predict", bodies, 16, 2)  # warm up
            for _ in range(args.rounds):
                for c in levels:
                    for model in runs:
                        path = f"/v1/models/{model}:predict"
                        runs[model][c].append(wrk(url, path, bodies, c, args.seconds))
    print(f"\n{args.tokens}-token texts, {args.seconds:g} s per cell, {args.rounds} rounds "
          "(best round shown)")  # fmt: skip
    best = {m: {c: max(r, key=lambda s: s["rps"]) for c, r in by.items()} for m, by in runs.items()}
    named = {
        f"{m} ({'ours, attention' if m == OURS else 'user module, logits only'})": by_level
        for m, by_level in best.items()
    }
    print(throughput_table(named, levels, "model"))
    for c in levels:
        ratio = best[user][c]["rps"] / best[OURS][c]["rps"]
        print(f"user / ours at c={c}: {ratio:.2f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "user_models.json").write_text(json.dumps(runs, indent=2))


if __name__ == "__main__":
    main()
