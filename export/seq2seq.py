"""Export a seq2seq model as two ONNX graphs (encoder, one decoder step), verify a whole
greedy decode against PyTorch, and describe both in a manifest."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from export.common import OPSET, ParityError, architecture, export_info, now
from model_src.chars import BOS_ID, EOS_ID, PAD_ID, UNK_ID, CharVocabulary, normalize
from model_src.manifest import (
    CharPreprocessing,
    GraphSpec,
    Manifest,
    TensorSpec,
    TrainingInfo,
    sha256_of,
)
from model_src.seq2seq import Seq2Seq

ENCODER_FILE, DECODER_FILE = "encoder.onnx", "decoder.onnx"
INPUT_VOCAB_FILE, OUTPUT_VOCAB_FILE = "input_vocab.txt", "output_vocab.txt"
MAX_BEAM_WIDTH = 8


def graph_specs(state_size: int, memory_size: int, vocab_size: int) -> dict[str, GraphSpec]:
    memory = TensorSpec(name="memory", dtype="float32", shape=["batch", "sequence", memory_size])
    state = TensorSpec(name="state", dtype="float32", shape=["batch", state_size])
    return {
        "encoder": GraphSpec(
            file=ENCODER_FILE,
            inputs=[
                TensorSpec(name="chars", dtype="int64", shape=["batch", "sequence"]),
                TensorSpec(name="lengths", dtype="int64", shape=["batch"]),
            ],
            outputs=[memory, state],
        ),
        "decoder": GraphSpec(
            file=DECODER_FILE,
            inputs=[
                TensorSpec(name="token", dtype="int64", shape=["batch"]),
                state,
                memory,
                TensorSpec(name="mask", dtype="bool", shape=["batch", "sequence"]),
            ],
            outputs=[
                TensorSpec(name="logits", dtype="float32", shape=["batch", vocab_size]),
                TensorSpec(name="next_state", dtype="float32", shape=["batch", state_size]),
                TensorSpec(name="attention", dtype="float32", shape=["batch", "sequence"]),
            ],
        ),
    }


def pad_batch(ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.array([len(x) for x in ids], dtype=np.int64)
    chars = np.full((len(ids), int(lengths.max())), PAD_ID, dtype=np.int64)
    for row, x in enumerate(ids):
        chars[row, : len(x)] = x
    return chars, lengths


def export_graphs(model: Seq2Seq, folder: Path) -> None:
    chars, lengths = (torch.from_numpy(a) for a in pad_batch([[4, 5, 6], [7, 8]]))
    with torch.no_grad():
        memory, state = model.encoder(chars, lengths)
    mask = torch.arange(chars.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)
    token = torch.full((2,), BOS_ID, dtype=torch.long)
    batch, seq = {0: "batch"}, {0: "batch", 1: "sequence"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(
            model.encoder,
            (chars, lengths),
            str(folder / ENCODER_FILE),
            dynamo=False,
            opset_version=OPSET,
            input_names=["chars", "lengths"],
            output_names=["memory", "state"],
            dynamic_axes={"chars": seq, "lengths": batch, "memory": seq, "state": batch},
        )
        torch.onnx.export(
            model.decoder,
            (token, state, memory, mask),
            str(folder / DECODER_FILE),
            dynamo=False,
            opset_version=OPSET,
            input_names=["token", "state", "memory", "mask"],
            output_names=["logits", "next_state", "attention"],
            dynamic_axes={
                "token": batch,
                "state": batch,
                "memory": seq,
                "mask": seq,
                "logits": batch,
                "next_state": batch,
                "attention": seq,
            },
        )
    for name in (ENCODER_FILE, DECODER_FILE):
        onnx.checker.check_model(onnx.load(str(folder / name)), full_check=True)


def _session(graph: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])


def onnx_greedy(
    folder: Path, ids: list[list[int]], max_len: int
) -> tuple[list[list[int]], list[np.ndarray]]:
    """Greedy decode with the two graphs: ids (without </s>) and every step's logits (B, V)."""
    encoder, decoder = _session(folder / ENCODER_FILE), _session(folder / DECODER_FILE)
    chars, lengths = pad_batch(ids)
    memory, state = encoder.run(None, {"chars": chars, "lengths": lengths})
    mask = np.arange(chars.shape[1])[None, :] < lengths[:, None]
    token = np.full(len(ids), BOS_ID, np.int64)
    outputs: list[list[int]] = [[] for _ in ids]
    done = np.zeros(len(ids), bool)
    steps = []
    for _ in range(max_len):
        feed = {"token": token, "state": state, "memory": memory, "mask": mask}
        logits, state, _ = decoder.run(None, feed)
        steps.append(logits)
        token = logits.argmax(-1).astype(np.int64)
        for i in np.flatnonzero(~done):
            if token[i] == EOS_ID:
                done[i] = True
            else:
                outputs[i].append(int(token[i]))
        if done.all():
            break
    return outputs, steps


def torch_step_logits(model: Seq2Seq, ids: list[list[int]], steps: int) -> list[np.ndarray]:
    """PyTorch's logits along its own greedy path, step by step."""
    chars, lengths = (torch.from_numpy(a) for a in pad_batch(ids))
    with torch.no_grad():
        memory, state = model.encoder(chars, lengths)
        mask = torch.arange(chars.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)
        token = torch.full((len(ids),), BOS_ID, dtype=torch.long)
        out = []
        for _ in range(steps):
            logits, state, _ = model.decoder(token, state, memory, mask)
            out.append(logits.numpy())
            token = logits.argmax(-1)
    return out


def greedy_parity(
    model: Seq2Seq, folder: Path, ids: list[list[int]], max_len: int
) -> tuple[float, bool]:
    """Largest logit difference over a whole greedy decode, and whether every output agrees."""
    got, onnx_logits = onnx_greedy(folder, ids, max_len)
    chars, lengths = (torch.from_numpy(a) for a in pad_batch(ids))
    expected, _ = model.greedy(chars, lengths, max_len)
    reference = torch_step_logits(model, ids, len(onnx_logits))
    diff = max(float(np.abs(a - b).max()) for a, b in zip(reference, onnx_logits, strict=True))
    return diff, got == expected


def parity_inputs(source: CharVocabulary, texts: list[str], max_chars: int) -> list[list[int]]:
    """Real held-out texts of mixed lengths plus a one-character and a full-length input."""
    rng = np.random.default_rng(0)
    ids = [source.encode(normalize(t))[:max_chars] for t in texts if normalize(t)]
    ids += [[int(rng.integers(4, len(source)))], [UNK_ID] * max_chars]
    return ids


def exact_match(
    folder: Path, source: CharVocabulary, target: CharVocabulary, heldout: dict, max_len: int
) -> float:
    """Held-out exact match of the exported graphs, decoded greedily as the service does."""
    texts, golds, correct = heldout["texts"], heldout["targets"], 0
    for start in range(0, len(texts), 256):
        ids = [source.encode(normalize(t)) for t in texts[start : start + 256]]
        outputs, _ = onnx_greedy(folder, ids, max_len)
        correct += sum(
            target.decode(o) == g for o, g in zip(outputs, golds[start : start + 256], strict=True)
        )
    return correct / len(texts)


def write_version(
    model: Seq2Seq,
    checkpoint: dict,
    folder: Path,
    name: str,
    version: int,
    tolerance: float,
    description: str = "",
) -> Manifest:
    """Fill a version folder: two graphs, two vocabularies, manifest. Refuses on parity."""
    source = CharVocabulary(tuple(checkpoint["input_vocab"]))
    target = CharVocabulary(tuple(checkpoint["output_vocab"]))
    max_in, max_out = checkpoint["max_input_chars"], checkpoint["max_output_chars"]
    heldout = checkpoint["heldout"]
    export_graphs(model, folder)
    ids = parity_inputs(source, heldout["texts"][:64], max_in)
    diff, same = greedy_parity(model, folder, ids, max_out)
    if not diff <= tolerance or not same:
        raise ParityError(
            f"onnxruntime's greedy decode differs from PyTorch's: logits by {diff:.3g} "
            f"(tolerance {tolerance:g}), outputs {'equal' if same else 'different'}"
        )
    source.save(folder / INPUT_VOCAB_FILE)
    target.save(folder / OUTPUT_VOCAB_FILE)
    metrics = dict(checkpoint["training"]["metrics"])
    if heldout["texts"]:
        metrics["test_heldout_locales_exact_match_onnx"] = round(
            exact_match(folder, source, target, heldout, max_out), 4
        )
    cfg = checkpoint["config"]
    memory_size = cfg["hidden_size"] * (2 if cfg["bidirectional"] else 1)
    state_size = model.config.state_size
    files = (ENCODER_FILE, DECODER_FILE, INPUT_VOCAB_FILE, OUTPUT_VOCAB_FILE)
    manifest = Manifest(
        name=name,
        version=version,
        task="seq2seq",
        description=description,
        created_at=now(),
        architecture=architecture(
            cfg,
            details={
                "decoder_hidden_size": cfg["decoder_hidden_size"],
                "output_embedding_dim": cfg["output_embedding_dim"],
                "state_size": state_size,
                "memory_size": memory_size,
                "max_beam_width": MAX_BEAM_WIDTH,
            },
        ),
        graphs=graph_specs(state_size, memory_size, len(target)),
        preprocessing=CharPreprocessing(
            input_vocab_file=INPUT_VOCAB_FILE,
            output_vocab_file=OUTPUT_VOCAB_FILE,
            max_input_chars=max_in,
            max_output_chars=max_out,
            details={
                "normalization": "NFKC",
                "pad_id": PAD_ID,
                "unk_id": UNK_ID,
                "bos_id": BOS_ID,
                "eos_id": EOS_ID,
            },
        ),
        files={f: sha256_of(folder / f) for f in files},
        export=export_info(diff, tolerance),
        training=TrainingInfo(**{**checkpoint["training"], "metrics": metrics}),
    )
    manifest.write(folder)
    return manifest


def version_writer(checkpoint_path: Path, args: Any) -> Callable[[Path, int], Manifest]:
    """For `rnnserve export`: the function that fills one version folder."""
    if getattr(args, "quantize", None):
        raise SystemExit("rnnserve export: --quantize is not supported for seq2seq models")
    from model_src.train_seq2seq import load_checkpoint

    model, checkpoint = load_checkpoint(checkpoint_path)

    def write(folder: Path, version: int) -> Manifest:
        return write_version(
            model, checkpoint, folder, args.name, version, args.tolerance, args.description
        )

    return write
