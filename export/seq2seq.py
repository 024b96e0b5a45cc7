"""Export a seq2seq model as two ONNX graphs (encoder, one decoder step), verify a whole
greedy decode against PyTorch, and describe both in a manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from contract.chars import BOS_ID, EOS_ID, PAD_ID, UNK_ID, CharVocabulary, normalize
from contract.manifest import CharPreprocessing, GraphSpec, TensorSpec
from export.common import architecture, cpu_session, pad_ids, to_onnx
from export.driver import Exporter, Parity
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


def pad_batch(ids: list[list[int]], pad_id: int = PAD_ID) -> tuple[np.ndarray, np.ndarray]:
    return pad_ids(ids, pad_id)


def export_graphs(
    model: Seq2Seq,
    folder: Path,
    example: list[list[int]] | None = None,
    pad_id: int = PAD_ID,
    bos_id: int = BOS_ID,
) -> None:
    """Trace both graphs on a batch of two inputs of different lengths."""
    example = example or [[4, 5, 6], [7, 8]]
    chars, lengths = (torch.from_numpy(a) for a in pad_batch(example, pad_id))
    with torch.no_grad():
        memory, state = model.encoder(chars, lengths)
    mask = torch.arange(chars.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)
    token = torch.full((2,), bos_id, dtype=torch.long)
    batch, seq = {0: "batch"}, {0: "batch", 1: "sequence"}
    to_onnx(
        model.encoder,
        (chars, lengths),
        folder / ENCODER_FILE,
        input_names=["chars", "lengths"],
        output_names=["memory", "state"],
        dynamic_axes={"chars": seq, "lengths": batch, "memory": seq, "state": batch},
    )
    to_onnx(
        model.decoder,
        (token, state, memory, mask),
        folder / DECODER_FILE,
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


def onnx_greedy(
    folder: Path,
    ids: list[list[int]],
    max_len: int,
    specials: tuple[int, int, int] = (PAD_ID, BOS_ID, EOS_ID),
) -> tuple[list[list[int]], list[np.ndarray]]:
    """Greedy decode with the two graphs: ids (without the end) and every step's logits (B, V).
    `specials`: the padding, start and end ids."""
    pad_id, bos_id, eos_id = specials
    encoder, decoder = cpu_session(folder / ENCODER_FILE), cpu_session(folder / DECODER_FILE)
    chars, lengths = pad_batch(ids, pad_id)
    memory, state = encoder.run(None, {"chars": chars, "lengths": lengths})
    mask = np.arange(chars.shape[1])[None, :] < lengths[:, None]
    token = np.full(len(ids), bos_id, np.int64)
    outputs: list[list[int]] = [[] for _ in ids]
    done = np.zeros(len(ids), bool)
    steps = []
    for _ in range(max_len):
        feed = {"token": token, "state": state, "memory": memory, "mask": mask}
        logits, state, _ = decoder.run(None, feed)
        steps.append(logits)
        token = logits.argmax(-1).astype(np.int64)
        for i in np.flatnonzero(~done):
            if token[i] == eos_id:
                done[i] = True
            else:
                outputs[i].append(int(token[i]))
        if done.all():
            break
    return outputs, steps


def torch_step_logits(
    model: Seq2Seq, ids: list[list[int]], steps: int, pad_id: int = PAD_ID, bos_id: int = BOS_ID
) -> list[np.ndarray]:
    """PyTorch's logits along its own greedy path, step by step."""
    chars, lengths = (torch.from_numpy(a) for a in pad_batch(ids, pad_id))
    with torch.no_grad():
        memory, state = model.encoder(chars, lengths)
        mask = torch.arange(chars.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)
        token = torch.full((len(ids),), bos_id, dtype=torch.long)
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
    texts, golds, correct = heldout.texts, heldout.targets, 0
    for start in range(0, len(texts), 256):
        ids = [source.encode(normalize(t)) for t in texts[start : start + 256]]
        outputs, _ = onnx_greedy(folder, ids, max_len)
        correct += sum(
            target.decode(o) == g for o, g in zip(outputs, golds[start : start + 256], strict=True)
        )
    return correct / len(texts)


def char_preprocessing(max_in: int, max_out: int) -> CharPreprocessing:
    """Characters in and out, with the vocabulary files and special ids every seq2seq shares."""
    return CharPreprocessing(
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
    )


class Seq2SeqExporter(Exporter):
    """The seq2seq task's exporter: encoder and decoder-step graphs, greedy-decode parity."""

    def __init__(self, checkpoint_path: Path) -> None:
        from model_src.train_seq2seq import TRAINER

        self.model, self.checkpoint = TRAINER.load_checkpoint(checkpoint_path)
        self.training = self.checkpoint.training
        self.source = CharVocabulary(tuple(self.checkpoint.input_vocab))
        self.target = CharVocabulary(tuple(self.checkpoint.output_vocab))
        self.max_in = self.checkpoint.max_input_chars
        self.max_out = self.checkpoint.max_output_chars
        cfg = self.checkpoint.config
        self.memory_size = cfg["hidden_size"] * (2 if cfg["bidirectional"] else 1)

    def export_graphs(self, folder: Path) -> dict[str, GraphSpec]:
        export_graphs(self.model, folder)
        state_size = self.model.config.state_size
        return graph_specs(state_size, self.memory_size, len(self.target))

    def parity(self, folder: Path) -> Parity:
        ids = parity_inputs(self.source, self.checkpoint.heldout.texts[:64], self.max_in)
        diff, same = greedy_parity(self.model, folder, ids, self.max_out)
        what = "onnxruntime's greedy decode differs from PyTorch's: logits"
        return Parity(diff, what=what, outputs_agree=same)

    def write_files(self, folder: Path) -> list[str]:
        self.source.save(folder / INPUT_VOCAB_FILE)
        self.target.save(folder / OUTPUT_VOCAB_FILE)
        return [INPUT_VOCAB_FILE, OUTPUT_VOCAB_FILE]

    def extra_metrics(self, folder: Path) -> dict[str, float]:
        heldout = self.checkpoint.heldout
        if not heldout.texts:
            return {}
        match = exact_match(folder, self.source, self.target, heldout, self.max_out)
        return {"test_heldout_locales_exact_match_onnx": round(match, 4)}

    def manifest_parts(self) -> dict[str, Any]:
        cfg = self.checkpoint.config
        return {
            "architecture": architecture(
                cfg,
                details={
                    "decoder_hidden_size": cfg["decoder_hidden_size"],
                    "output_embedding_dim": cfg["output_embedding_dim"],
                    "state_size": self.model.config.state_size,
                    "memory_size": self.memory_size,
                    "max_beam_width": MAX_BEAM_WIDTH,
                },
            ),
            "preprocessing": char_preprocessing(self.max_in, self.max_out),
        }
