"""What the classifier benchmarks send: real sentences, or one fixed-length text.

- `sst2-dev`: the SST-2 dev split (872 held-out movie-review sentences, 2 to 54 tokens, about
  21 on average), one sentence per request, in file order, cycled. What a user's traffic
  looks like: short and of mixed lengths, where length-aware batching has work to skip.
- `fixed-64`: one 64-token text per request (256 different texts of SST-2-like words). The
  worst case for length-aware batching (nothing to skip), kept for comparison with older runs.

The dev split is read from a folder the user names (`--data`, `make bench DATA=...`; the default
is `data/sst2`, see data/README.md); nothing is downloaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from bench.payloads import texts
from contract.manifest import Manifest
from contract.words import Vocabulary, tokenize
from model_src.data import read_examples

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT / "data" / "sst2"
NAMES = ("sst2-dev", "fixed-64")


@dataclass(frozen=True)
class Workload:
    name: str
    texts: list[str]
    description: str


def sst2_dev(data: Path) -> list[str]:
    """The sentences of `data`'s dev split (dev.tsv, .csv or .jsonl), in file order."""
    found = [data / f"dev{suffix}" for suffix in (".tsv", ".csv", ".jsonl")]
    path = next((p for p in found if p.exists()), None)
    if path is None:
        raise SystemExit(
            f"no SST-2 dev split in {data} (dev.tsv): see data/README.md, or pass --data "
            "(make bench DATA=...) naming a folder that has one"
        )
    return [example.text for example in read_examples(path)]


def load(name: str, data: Path = DEFAULT_DATA) -> Workload:
    if name == "sst2-dev":
        sentences = sst2_dev(data)
        return Workload(name, sentences, f"SST-2 dev sentences ({len(sentences)}), one per request")
    if name == "fixed-64":
        return Workload(name, texts(256, 64), "one 64-token text per request")
    raise ValueError(f"unknown workload {name!r}: expected one of {NAMES}")


def load_all(names: list[str], data: Path = DEFAULT_DATA) -> list[Workload]:
    return [load(name, data) for name in names]


def token_ids(model_folder: Path, sentences: list[str]) -> list[list[int]]:
    """Each text as the model's vocabulary ids, at its real length (what the server would
    compute from the text)."""
    manifest = Manifest.read(model_folder)
    prep = manifest.preprocessing
    vocab = Vocabulary.load(model_folder / prep.vocab_file)
    return [vocab.encode(tokenize(text, prep.lowercase)) or [vocab.encode(["."])[0]]
            for text in sentences]  # fmt: skip


def lengths_summary(ids: list[list[int]]) -> str:
    lengths = sorted(len(x) for x in ids)
    mean = sum(lengths) / len(lengths)
    return (
        f"{lengths[0]}-{lengths[-1]} tokens, mean {mean:.1f}, median {lengths[len(lengths) // 2]}"
    )


def write_lines(path: Path, bodies: list[dict]) -> Path:
    """One JSON body per line, for bench/wrk_post.lua (each request posts the next line)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(body, separators=(",", ":")) + "\n" for body in bodies))
    return path


def v1_text(sentences: list[str]) -> list[dict]:
    return [{"instances": [text]} for text in sentences]


def v2_tokens(ids: list[list[int]]) -> list[dict]:
    """V2 INT64 `tokens` at each text's real length (rnnserve batches mixed lengths)."""
    return [
        {"inputs": [{"name": "tokens", "shape": [1, len(x)], "datatype": "INT64", "data": x}]}
        for x in ids
    ]


def padded(ids: list[list[int]], width: int, pad: int = 0) -> list[tuple[list[int], int]]:
    """Each id list padded (or cut) to `width`, with its real length: the peers' dynamic
    batchers concatenate only requests of equal shape."""
    return [((x + [pad] * width)[:width], min(len(x), width)) for x in ids]
