"""A user's module or ONNX graph at export: each breach of the contract refused with its message,
and what a kept contract publishes (no server here; tests/test_user_models.py serves them)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from contract.manifest import Manifest
from export.__main__ import main as export
from export.common import cpu_session
from tests.conftest import ROOT

MODULES = ROOT / "tests" / "user_models" / "modules.py"
VOCAB = ["[UNK]", "a", "b", "c", "d", "e", " ", "[PAD]"]  # our ids 0 and 1 are not its specials


@pytest.fixture
def vocab_file(tmp_path) -> Path:
    path = tmp_path / "vocab.txt"
    path.write_text("".join(f"{t}\n" for t in VOCAB))
    return path


def export_module(tmp_path: Path, vocab_file: Path, kind: str, *extra: str) -> list[str]:
    config = tmp_path / f"{kind}.json"
    config.write_text(json.dumps({"kind": kind, "vocab_size": len(VOCAB), "pad_id": 7}))
    return [
        "--task", "classify", "--module", f"{MODULES}:build", "--config", str(config),
        "--vocab", str(vocab_file), "--tokenizer", "chars", "--pad-token", "[PAD]",
        "--unk-token", "[UNK]", "--labels", "negative,positive", "--name", "mine",
        "--repository", str(tmp_path / "models"), *extra,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("WrongClasses", "expected logits of shape [5, 2] (batch, one per label of "
                         "['negative', 'positive']), got a float32 tensor of shape [5, 4]"),
        ("IntegerLogits", "expected float logits, got a int64 tensor of shape [5, 2]"),
        ("NeedsMask", "expected forward(tokens: int64[B, T], lengths: int64[B]) -> logits [B, C] "
                      "or (logits, attention [B, T]); calling it so raised: NeedsMask.forward() "
                      "missing 1 required positional argument: 'mask'"),
        ("ReadsPadding", "expected a sequence's logits not to depend on the padding after it"),
        ("NotExportable", "NotExportable could not be exported to ONNX: UnsupportedOperatorError: "
                          "Exporting the operator 'aten::cummax' to ONNX opset version 17 is not "
                          "supported"),
    ],
)  # fmt: skip
def test_a_broken_contract_is_refused_with_one_line(tmp_path, vocab_file, capfd, kind, message):
    with pytest.raises(SystemExit) as exit_:
        export(export_module(tmp_path, vocab_file, kind))
    assert exit_.value.code == 1
    out, err = capfd.readouterr()
    assert err.startswith("rnnserve export: refused: ") and message in err
    assert len(err.strip().splitlines()) == 1  # no stack trace, no exporter IR dump
    assert "Traceback" not in out + err and "graph(" not in out + err
    published = tmp_path / "models" / "mine"
    assert not published.exists() or not [p for p in published.iterdir()]


def test_a_vocabulary_without_the_named_padding_token_is_refused(tmp_path, vocab_file, capfd):
    with pytest.raises(SystemExit):
        export([*export_module(tmp_path, vocab_file, "MaxPoolGRU"), "--pad-token", "<pad>"])
    err = capfd.readouterr().err
    assert "the padding token '<pad>' is not in the vocabulary" in err


def test_int8_needs_data_to_check_its_accuracy(tmp_path, vocab_file, capfd):
    with pytest.raises(SystemExit):
        export([*export_module(tmp_path, vocab_file, "MaxPoolGRU"), "--quantize", "int8"])
    assert "--quantize int8 needs --eval-data" in capfd.readouterr().err


def test_a_kept_contract_publishes_the_vocabularys_own_ids(tmp_path, vocab_file):
    folder = export(export_module(tmp_path, vocab_file, "AttentionLSTM", "--lowercase"))
    manifest = Manifest.read(folder)
    assert (manifest.origin, manifest.task, manifest.architecture, manifest.training) == (
        "module", "classify", None, None,
    )  # fmt: skip
    prep = manifest.preprocessing
    assert (prep.kind, prep.pad_id, prep.unk_id, prep.lowercase) == ("chars", 7, 0, True)
    assert [o.name for o in manifest.graphs["model"].outputs] == ["probabilities", "attention"]
    assert manifest.export.parity_max_abs_diff <= 1e-4
    assert (folder / "vocab.txt").read_text().splitlines()[7] == "[PAD]"
    again = export(export_module(tmp_path, vocab_file, "MaxPoolGRU"))
    assert again.name == "2"
    assert [o.name for o in Manifest.read(again).graphs["model"].outputs] == ["probabilities"]


def test_a_trained_models_manifest_stays_strict(tiny_repository):
    data = json.loads((tiny_repository / "tiny-lstm" / "1" / "manifest.json").read_text())
    for field in ("architecture", "training", "preprocessing"):
        broken = {k: v for k, v in data.items() if k != field}
        with pytest.raises(ValueError, match=f"a model of origin 'trained' needs {field}"):
            Manifest.model_validate(broken)
    with pytest.raises(ValueError, match="task 'tensor' is for ONNX graphs"):
        Manifest.model_validate({**data, "task": "tensor"})


def test_a_graph_with_non_tensor_outputs_is_refused(tmp_path, capfd):
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(np.int64))
    graph = tmp_path / "zipmap.onnx"
    graph.write_bytes(to_onnx(model, x[:1]).SerializeToString())  # ZipMap: a sequence of maps
    with pytest.raises(SystemExit):
        export(["--task", "tensor", "--onnx", str(graph), "--name", "lr",
                "--repository", str(tmp_path / "models")])  # fmt: skip
    err = capfd.readouterr().err
    assert "expected tensor outputs, got output 'output_probability' of type sequence_type" in err
    assert "options={'zipmap': False}" in err


def test_a_graph_that_fails_to_run_is_refused(tmp_path, capfd):
    import onnx
    from onnx import TensorProto, helper

    # Reshape to a fixed 3 values: declared for any length, it runs on none but 3.
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        "fixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
        [helper.make_tensor("shape", TensorProto.INT64, [1], [3])],
    )
    path = tmp_path / "fixed.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(SystemExit):
        export(["--task", "tensor", "--onnx", str(path), "--name", "fixed",
                "--repository", str(tmp_path / "models")])  # fmt: skip
    err = capfd.readouterr().err
    assert "expected the graph to load in onnxruntime and run an example, got " in err


def test_a_seq2seq_decoder_without_attention_is_refused(tmp_path, capfd):
    from contract.chars import SPECIALS, CharVocabulary

    vocab = tmp_path / "vocab.txt"
    CharVocabulary((*SPECIALS, *"0123456789")).save(vocab)
    config = tmp_path / "s2s.json"
    config.write_text(json.dumps({"input_size": 14, "output_size": 14, "decoder": "NoAttention"}))
    with pytest.raises(SystemExit):
        export(["--task", "seq2seq", "--module", f"{ROOT / 'tests/user_models/seq2seq.py'}:build",
                "--config", str(config), "--input-vocab", str(vocab), "--output-vocab", str(vocab),
                "--name", "s2s", "--repository", str(tmp_path / "models")])  # fmt: skip
    err = capfd.readouterr().err
    assert "expected the decoder to return (logits, next_state, attention), got a tuple of 2" in err


def seq2seq_args(tmp_path: Path, inputs: Path, outputs: Path, *extra: str) -> list[str]:
    config = tmp_path / "s2s.json"
    config.write_text(json.dumps({"input_size": 14, "output_size": 14}))
    return ["--task", "seq2seq", "--module", f"{ROOT / 'tests/user_models/seq2seq.py'}:build",
            "--config", str(config), "--input-vocab", str(inputs), "--output-vocab", str(outputs),
            "--name", "s2s", "--repository", str(tmp_path / "models"), *extra]  # fmt: skip


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"a\nb\na\n" + b"".join(b"%d\n" % i for i in range(11)),
         "the input side: the vocabulary lists ['a'] more than once"),
        (b"\xff\xfe<\x00s\x00>\x00\n", "cannot read the vocabulary"),
        (b"SOS\nEOS\n" + b"".join(b"w%d\n" % i for i in range(12)),
         "the input side: the padding token '<pad>' is not in the vocabulary"),
    ],
)  # fmt: skip
def test_a_malformed_seq2seq_vocabulary_is_one_line(tmp_path, capfd, content, message):
    from contract.chars import SPECIALS, CharVocabulary

    good, bad = tmp_path / "good.txt", tmp_path / "bad.txt"
    CharVocabulary((*SPECIALS, *"0123456789")).save(good)
    bad.write_bytes(content)
    with pytest.raises(SystemExit) as exit_:
        export(seq2seq_args(tmp_path, bad, good))
    assert exit_.value.code == 1
    out, err = capfd.readouterr()
    assert err.startswith("rnnserve export: refused: ") and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in out + err


def test_a_seq2seq_takes_its_own_special_tokens_by_name(tmp_path, capfd):
    """Word-level vocabularies with the tutorial's SOS=0 and EOS=1 (padding with SOS, no
    unknown token): published without remapping an id; a special token missing is refused."""
    vocab = tmp_path / "words.txt"
    vocab.write_text("".join(f"{w}\n" for w in ["SOS", "EOS", *(f"w{i}" for i in range(12))]))
    folder = export(seq2seq_args(tmp_path, vocab, vocab, "--tokenizer", "words", "--pad-token",
                                 "SOS", "--bos-token", "SOS", "--eos-token", "EOS",
                                 "--append-eos"))  # fmt: skip
    prep = Manifest.read(folder).preprocessing
    assert (prep.kind, prep.bos_id, prep.eos_id, prep.input_eos_id) == (
        "seq2seq_tokens", 0, 1, 1,
    )  # fmt: skip
    assert (prep.input.kind, prep.input.pad_id, prep.input.unk_id) == ("words", 0, None)
    assert (folder / prep.input.vocab_file).read_text().splitlines()[:2] == ["SOS", "EOS"]
    with pytest.raises(SystemExit):
        export(seq2seq_args(tmp_path, vocab, vocab, "--tokenizer", "words", "--pad-token", "SOS",
                            "--eos-token", "EOS"))  # fmt: skip
    err = capfd.readouterr().err
    assert "the bos token '<s>' is not in the output vocabulary; name it with --bos-token" in err


def test_int8_keeps_the_accuracy_it_measured(tmp_path, vocab_file):
    data = tmp_path / "eval.tsv"
    data.write_text("label\tsentence\n" + "".join(
        f"{['negative', 'positive'][i % 2]}\t{'abcde'[: 1 + i % 5]} {'edcba'[: 1 + i % 3]}\n"
        for i in range(40)
    ))  # fmt: skip
    folder = export([*export_module(tmp_path, vocab_file, "AttentionLSTM"), "--quantize", "int8",
                     "--eval-data", str(data), "--max-accuracy-drop", "1"])  # fmt: skip
    manifest = Manifest.read(folder)
    assert manifest.export.quantized == "int8"
    assert manifest.export.accuracy_change is not None
    assert manifest.export.parity_max_abs_diff is not None


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"kind": "Forgetful"}, "expected a series fed in chunks (carrying the state) to give "
                                "what it gives fed whole, got a difference of"),
        ({"kind": "Primed"}, "expected initial_state(1) to give zeros (the service opens "
                             "each session with zeros), got state 1 with other values"),
        (None, "expected StepGRU to have initial_state(batch)"),
    ],
)  # fmt: skip
def test_a_forecaster_that_breaks_its_contract_is_refused(tmp_path, capfd, config, message):
    module = f"{ROOT / 'tests/user_models/forecast.py'}:build"
    if config is None:  # a plain module: its initial_state taken away
        from export.forecast import ForecastExporter
        from export.user_module import ContractError, load_callable

        step = load_callable(module)()
        step.initial_state = None
        with pytest.raises(ContractError, match=re.escape(message)):
            ForecastExporter(step)
        return
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    with pytest.raises(SystemExit):
        export(["--task", "forecast", "--module", module, "--config", str(path), "--name", "fc",
                "--repository", str(tmp_path / "models")])  # fmt: skip
    assert message in capfd.readouterr().err


def test_probabilities_are_refused_unless_said_and_then_not_softmaxed_again(
    tmp_path, vocab_file, capfd
):
    with pytest.raises(SystemExit):
        export(export_module(tmp_path, vocab_file, "Probabilities"))
    err = capfd.readouterr().err
    assert "non-negative and sums to 1: these look like probabilities" in err
    assert re.search(r"\(0\.\d{3} would be served as 0\.\d{3}\)", err)
    assert "--outputs probabilities" in err
    folder = export([*export_module(tmp_path, vocab_file, "Probabilities"), "--outputs",
                     "probabilities"])  # fmt: skip
    module = load_module("Probabilities")
    tokens, lengths = np.array([[1, 2, 3], [4, 5, 7]]), np.array([3, 2])
    with torch.no_grad():
        expected = module(torch.from_numpy(tokens), torch.from_numpy(lengths)).numpy()
    (got,) = cpu_session(folder / "model.onnx").run(
        ["probabilities"], {"tokens": tokens, "lengths": lengths}
    )
    np.testing.assert_allclose(got, expected, atol=1e-5)  # as the module says, not softmaxed
    with pytest.raises(SystemExit):
        export([*export_module(tmp_path, vocab_file, "MaxPoolGRU"), "--outputs", "probabilities"])
    assert "expected probabilities (--outputs probabilities)" in capfd.readouterr().err


def load_module(kind: str):
    from export.user_module import load_callable

    return load_callable(f"{MODULES}:build")(kind=kind, vocab_size=len(VOCAB), pad_id=7).eval()


def users_tokenize(text: str) -> list[str]:
    """A tokenizer as users write it: words with their apostrophes, and each punctuation mark."""
    return re.findall(r"[\w']+|[^\w\s]", text.lower())


USERS_REGEX = r"[\w']+|[^\w\s]"
CORPUS = ["It's a fine film, isn't it?", "didn't like it!", "the cast's best work",
          "a wonderful , moving film .", "L'été: 3 films (2 good)...", "rock 'n' roll",
          "DULL -- and 'tedious'", "naïve, yet it's charming"]  # fmt: skip


def corpus_vocab(texts: list[str], min_count: int = 1) -> list[str]:
    from collections import Counter

    counts = Counter(t for text in texts for t in users_tokenize(text))
    return ["<pad>", "<unk>", *sorted(t for t, n in counts.items() if n >= min_count)]


def test_tokenizer_examples_that_the_served_tokenizer_disagrees_with_are_refused(tmp_path, capfd):
    """The built-in word tokenizer splits "it's" where the user's does not: refused with the
    first differing example; a regex tokenizer built from the user's regex agrees."""
    vocab = corpus_vocab(CORPUS)
    (tmp_path / "vocab.txt").write_text("".join(f"{t}\n" for t in vocab))
    ids = {t: i for i, t in enumerate(vocab)}
    examples = tmp_path / "examples.jsonl"
    examples.write_text("".join(
        json.dumps({"text": t, "ids": [ids[w] for w in users_tokenize(t)]}) + "\n" for t in CORPUS
    ))  # fmt: skip
    config = tmp_path / "model.json"
    config.write_text(json.dumps({"kind": "MaxPoolGRU", "vocab_size": len(vocab)}))
    args = ["--task", "classify", "--module", f"{MODULES}:build", "--config", str(config),
            "--vocab", str(tmp_path / "vocab.txt"), "--lowercase", "--labels", "neg,pos",
            "--tokenizer-examples", str(examples), "--name", "mine",
            "--repository", str(tmp_path / "models")]  # fmt: skip
    with pytest.raises(SystemExit):
        export(args)
    err = capfd.readouterr().err
    from contract.words import tokenize

    differing = [t for t in CORPUS if tokenize(t) != users_tokenize(t)]
    first = differing[0]
    assert (
        f"the served tokenizer disagrees with yours on {len(differing)} of {len(CORPUS)} "
        "examples; the first: "
        f"text {first!r}, expected ids {[ids[w] for w in users_tokenize(first)]}, served ids "
    ) in err
    assert "tokens ['it', \"'s\", 'a'" in err and len(err.strip().splitlines()) == 1
    folder = export([*args, "--tokenizer-regex", USERS_REGEX])
    prep = Manifest.read(folder).preprocessing
    assert (prep.kind, prep.pad_id) == ("hf_tokenizer", 0)


def sst2_texts() -> list[str]:
    data = ROOT / "data" / "sst2"
    if not (data / "train.tsv").exists():
        pytest.skip(f"SST-2 is not in {data} (see data/README.md)")
    texts = []
    for split in ("train.tsv", "dev.tsv"):
        lines = (data / split).read_text(encoding="utf-8").splitlines()
        column = lines[0].split("\t").index("label")  # the other column is the text
        texts += [line.split("\t")[1 - column] for line in lines[1:]]
    return texts


@pytest.mark.parametrize("corpus", ["written here", "sst2"])
def test_a_regex_tokenizer_gives_the_users_own_ids(corpus):
    """Built from the user's regex and vocabulary (unknown tokens included): the same ids as
    the user's Python tokenizer on every text of the corpus."""
    from contract.text import HFEncoder
    from export.tokenization import regex_tokenizer

    texts = CORPUS + [c.upper() for c in CORPUS[:4]] if corpus == "written here" else sst2_texts()
    vocab = corpus_vocab(texts, min_count=2)
    ids = {t: i for i, t in enumerate(vocab)}
    encoder = HFEncoder(regex_tokenizer(USERS_REGEX, vocab, "<unk>", lowercase=True), pad_id=0)
    got = [e.ids for e in encoder.tokenizer.encode_batch(texts)]
    expected = [[ids.get(t, 1) for t in users_tokenize(text)] for text in texts]
    differing = [t for t, a, b in zip(texts, got, expected, strict=True) if a != b]
    assert not differing, differing[:3]
    assert any(1 in row for row in expected)  # unknown tokens were exercised


def test_the_page_card_travels_in_the_manifest(tmp_path, vocab_file):
    """--title, --description and --example (repeatable) in the manifest; none: empty."""
    folder = export([*export_module(tmp_path, vocab_file, "MaxPoolGRU"), "--title", "Moods",
                     "--description", "Tells a good mood from a bad one.", "--example", "a b",
                     "--example", "e d c"])  # fmt: skip
    manifest = Manifest.read(folder)
    assert (manifest.title, manifest.description, manifest.examples) == (
        "Moods", "Tells a good mood from a bad one.", ["a b", "e d c"],
    )  # fmt: skip
    plain = Manifest.read(export(export_module(tmp_path, vocab_file, "MaxPoolGRU")))
    assert (plain.title, plain.description, plain.examples) == ("", "", [])
    from export.api import publish_classifier

    folder = publish_classifier(
        load_module("MaxPoolGRU"), vocab=VOCAB, tokenizer="chars", pad_token="[PAD]",
        unk_token="[UNK]", labels=["negative", "positive"], name="api",
        repository=tmp_path / "models", title="From Python", examples=["abc"],
    )  # fmt: skip
    assert (Manifest.read(folder).title, Manifest.read(folder).examples) == ("From Python", ["abc"])


def test_a_seq2seq_reads_and_writes_through_a_tokenizer_json(tmp_path):
    """One tokenizer.json for both sides (its own [PAD], [BOS], [EOS]); the served text side
    is rebuilt from the published files and decodes with the tokenizer's own decoder."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from contract.seq2seq_text import seq2seq_text
    from export.api import publish_seq2seq
    from export.user_module import load_callable

    words = ["[PAD]", "[BOS]", "[EOS]", "[UNK]", *(f"w{i}" for i in range(10))]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    model = load_callable(f"{ROOT / 'tests/user_models/seq2seq.py'}:build")(
        input_size=len(words), output_size=len(words)
    )
    folder = publish_seq2seq(
        model.encoder, model.decoder, tokenizer=tmp_path / "tokenizer.json", pad_token="[PAD]",
        unk_token="[UNK]", bos_token="[BOS]", eos_token="[EOS]", max_output_chars=6,
        tokenizer_examples=[("w1 w2 zz", [5, 6, 3])], name="hf", repository=tmp_path / "models",
    )  # fmt: skip
    prep = Manifest.read(folder).preprocessing
    assert (prep.input.kind, prep.output.kind, prep.bos_id, prep.eos_id) == (
        "hf_tokenizer", "hf_tokenizer", 1, 2,
    )  # fmt: skip
    text = seq2seq_text(prep, folder)
    assert text.encode("w1 w2 zz") == (["w1", "w2", "[UNK]"], [5, 6, 3])
    assert text.decode([5, 6]) == "w1 w2"
