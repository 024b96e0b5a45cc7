"""Users' own models served by a real server: a module from outside model_src exported through
the CLI and through the Python API, a Hugging Face tokenizer, and an scikit-learn graph through
V2 with the Triton client. Every answer is compared with what the user's own code computes."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from cli import main as rnnserve
from contract.chars import BOS_ID, EOS_ID, SPECIALS, CharVocabulary
from contract.text import TokenVocabulary
from contract.words import tokenize
from export.api import publish_classifier, publish_forecaster
from export.user_module import load_callable
from tests.conftest import DEFAULT_MODELS, ROOT, copy_version, write_tiny_corpus
from tests.live_server import free_port, live_server

pytestmark = pytest.mark.slow
EXAMPLE = ROOT / "examples" / "char_gru"
LABELS = ["negative", "positive"]
TEXTS = ["a wonderful , moving film .", "dull", "the plot is so tedious and bland .",
         "Brilliant!", "what a charming , funny movie"]  # fmt: skip
SEQ2SEQ = ROOT / "tests" / "user_models" / "seq2seq.py"
TUTORIAL = ROOT / "tests" / "user_models" / "tutorial_seq2seq.py"
PAIRS = [
    ("je suis grand", "i am tall"), ("je suis petit", "i am short"),
    ("il est grand", "he is tall"), ("il est petit", "he is short"),
    ("elle est contente", "she is happy"), ("nous sommes contents", "we are happy"),
    ("tu es fatigue", "you are tired"), ("je suis fatigue", "i am tired"),
    ("ils sont grands", "they are tall"), ("je ne suis pas grand", "i am not tall"),
]  # fmt: skip
FORECAST = ROOT / "tests" / "user_models" / "forecast.py"
MODULES = load_callable(f"{ROOT / 'tests' / 'user_models' / 'modules.py'}:MODULES")
README_DEFAULTS = ("sst2-lstm", "dates", "co2-gru")


def hf_tokenizer(path: Path) -> None:
    """A tiny WordLevel tokenizer made here (nothing downloaded), [PAD] at id 3."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    words = ["[UNK]", "a", "the", "[PAD]", *sorted({w for t in TEXTS for w in t.lower().split()})]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(path))


def iris_like(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(150, 4)).astype(np.float32)
    return x, (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1)


def row_sum_graph(path: Path) -> None:
    """[n, m] -> [n]: requests of different m must never be stacked together."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x", "axes"], ["total"], keepdims=0)],
        "row_sum",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", "m"])],
        [helper.make_tensor_value_info("total", TensorProto.FLOAT, ["n"])],
        [helper.make_tensor("axes", TensorProto.INT64, [1], [1])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    """The users' models (and what their own code answers), published into one repository."""
    work = tmp_path_factory.mktemp("own")
    repository = work / "models"
    corpus = write_tiny_corpus(work / "corpus", rows=200)
    run = work / "run"
    subprocess.run(
        [sys.executable, str(EXAMPLE / "train.py"), "--data", str(corpus), "--out", str(run),
         "--epochs", "2", "--hidden-size", "16"],
        check=True, capture_output=True,
    )  # fmt: skip
    rnnserve(["export", "--task", "classify", "--module", f"{EXAMPLE / 'model.py'}:build",
              "--config", str(run / "config.json"), "--weights", str(run / "weights.pt"),
              "--vocab", str(run / "vocab.txt"), "--tokenizer", "chars", "--lowercase",
              "--pad-token", "[PAD]", "--unk-token", "[UNK]", "--labels", ",".join(LABELS),
              "--name", "reviews", "--repository", str(repository)])  # fmt: skip
    example = load_callable(f"{EXAMPLE / 'model.py'}:build")(
        **json.loads((run / "config.json").read_text())
    )
    example.load_state_dict(torch.load(run / "weights.pt", weights_only=True))
    chars = TokenVocabulary.named(TokenVocabulary.read_tokens(run / "vocab.txt"), "[PAD]", "[UNK]")

    words = ["<w>", *sorted({w for t in TEXTS[1:] for w in tokenize(t)}), "<unknown>", "<pad>"]
    torch.manual_seed(1)
    attention = MODULES["AttentionLSTM"](len(words), pad_id=len(words) - 1)
    publish_classifier(attention, vocab=words, labels=LABELS, name="attn", repository=repository,
                       lowercase=True, pad_token="<pad>", unk_token="<unknown>")  # fmt: skip
    word_vocab = TokenVocabulary.named(words, "<pad>", "<unknown>")

    hf_tokenizer(work / "tokenizer.json")
    torch.manual_seed(2)
    hf = MODULES["MaxPoolGRU"](64, pad_id=3)
    publish_classifier(hf, tokenizer=work / "tokenizer.json", pad_token="[PAD]", labels=LABELS,
                       name="hf", repository=repository)  # fmt: skip

    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    x, y = iris_like()
    sklearn_model = LogisticRegression(max_iter=500).fit(x, y)
    graph = work / "lr.onnx"
    graph.write_bytes(
        to_onnx(
            sklearn_model, x[:1], options={id(sklearn_model): {"zipmap": False}}
        ).SerializeToString()
    )
    rnnserve(["export", "--task", "tensor", "--onnx", str(graph), "--name", "iris",
              "--repository", str(repository)])  # fmt: skip
    row_sum_graph(work / "row_sum.onnx")
    rnnserve(["export", "--task", "tensor", "--onnx", str(work / "row_sum.onnx"), "--name",
              "rowsum", "--repository", str(repository)])  # fmt: skip
    inputs, outputs = [*SPECIALS, *"0123456789 -/"], [*SPECIALS, *"0123456789-"]
    CharVocabulary(tuple(inputs)).save(work / "input_vocab.txt")
    CharVocabulary(tuple(outputs)).save(work / "output_vocab.txt")
    (work / "s2s.json").write_text(
        json.dumps({"input_size": len(inputs), "output_size": len(outputs), "size": 24})
    )
    rnnserve(["export", "--task", "seq2seq", "--module", f"{SEQ2SEQ}:build", "--config",
              str(work / "s2s.json"), "--input-vocab", str(work / "input_vocab.txt"),
              "--output-vocab", str(work / "output_vocab.txt"), "--max-output-chars", "12",
              "--name", "s2s", "--repository", str(repository)])  # fmt: skip
    seq2seq = load_callable(f"{SEQ2SEQ}:build")(**json.loads((work / "s2s.json").read_text()))
    tutorial = publish_tutorial_translator(work / "tutorial", repository)
    forecaster = load_callable(f"{FORECAST}:build")()
    publish_forecaster(forecaster, name="fc", repository=repository, mean=10.0, std=2.0)
    for name in README_DEFAULTS:  # what the README's other curl commands ask
        copy_version(DEFAULT_MODELS / name / "1", repository, name, 1)
    grpc_port = free_port()
    with live_server(repository, max_batch_delay_ms="20", grpc_port=str(grpc_port)) as url:
        yield {
            "url": url,
            "reviews": (example, lambda t: chars.encode(list(t.lower()))),
            "attn": (attention, lambda t: word_vocab.encode(tokenize(t))),
            "hf": (hf, lambda t: hf_encode(work / "tokenizer.json", t)),
            "sklearn": sklearn_model,
            "s2s": (seq2seq, CharVocabulary(tuple(inputs)), CharVocabulary(tuple(outputs))),
            "fc": forecaster,
            "translate": tutorial,
            "repository": repository,
            "grpc": f"127.0.0.1:{grpc_port}",
        }


def publish_tutorial_translator(work: Path, repository: Path) -> tuple:
    """The PyTorch tutorial's translator trained a few steps, published with its own vocabulary
    files (SOS=0, EOS=1, inputs ending with EOS), its own tokenisation checked on its ids."""
    from tests.user_models import tutorial_seq2seq as tutorial

    work.mkdir()
    fra, eng = tutorial.Lang("fra"), tutorial.Lang("eng")
    for source, target in PAIRS:
        fra.addSentence(source)
        eng.addSentence(target)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: one thread is fastest on a busy machine
    try:
        encoder, decoder = tutorial.train(PAIRS, fra, eng, hidden_size=32, epochs=200)
    finally:
        torch.set_num_threads(threads)
    config = {"input_words": fra.n_words, "output_words": eng.n_words, "hidden_size": 32}
    translator = tutorial.build(**config)
    translator.encoder.rnn.load_state_dict(encoder.state_dict())
    translator.decoder.rnn.load_state_dict(decoder.state_dict())
    torch.save(translator.state_dict(), work / "weights.pt")
    (work / "config.json").write_text(json.dumps(config))
    for lang in (fra, eng):
        words = [lang.index2word[i] for i in range(lang.n_words)]
        (work / f"{lang.name}.txt").write_text("".join(f"{w}\n" for w in words))
    (work / "fra.jsonl").write_text("".join(
        json.dumps({"text": s, "ids": tutorial.tensorFromSentence(fra, s)[0].tolist()}) + "\n"
        for s, _ in PAIRS
    ))  # fmt: skip
    rnnserve(["export", "--task", "seq2seq", "--module", f"{TUTORIAL}:build",
              "--config", str(work / "config.json"), "--weights", str(work / "weights.pt"),
              "--input-vocab", str(work / "fra.txt"), "--output-vocab", str(work / "eng.txt"),
              "--tokenizer-regex", "[a-z]+|[!?]", "--lowercase", "--tokenizer-examples",
              str(work / "fra.jsonl"), "--pad-token", "SOS", "--bos-token", "SOS",
              "--eos-token", "EOS", "--append-eos", "--max-output-tokens",
              str(tutorial.MAX_LENGTH), "--title", "French to English",
              "--description", "The PyTorch tutorial's translator, trained on ten sentences.",
              "--example", "je suis grand", "--example", "il est petit",
              "--name", "translate", "--repository", str(repository)])  # fmt: skip
    return tutorial, encoder, decoder, fra, eng


def hf_encode(path: Path, text: str) -> list[int]:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path)).encode(text).ids


def torch_answer(module, ids: list[int]) -> tuple[np.ndarray, np.ndarray | None]:
    """The user's module on one text alone: softmax of its logits, and its attention."""
    with torch.no_grad():
        out = module(torch.tensor([ids]), torch.tensor([len(ids)]))
    logits, attention = (out[0], out[1]) if isinstance(out, tuple) else (out, None)
    weights = None if attention is None else attention[0].numpy()
    return torch.softmax(logits[0], -1).numpy(), weights


@pytest.mark.parametrize("name", ["reviews", "attn", "hf"])
def test_classifiers_answer_as_the_users_pytorch_module(own, name):
    """Texts of mixed lengths in one request (batched together): each equals PyTorch alone."""
    module, encode = own[name]
    url = f"{own['url']}/v1/models/{name}:predict"
    with_attention = {"instances": TEXTS, "parameters": {"attention": True}}
    response = httpx.post(url, json=with_attention, timeout=30)
    has_attention = torch_answer(module, encode(TEXTS[0]))[1] is not None
    if not has_attention:  # said, not silently ignored
        assert response.status_code == 422  # V1's status for bad input
        assert response.json()["error"].startswith(
            "parameters.attention: this model has no attention output"
        )
        response = httpx.post(url, json={"instances": TEXTS}, timeout=30)
    assert response.status_code == 200, response.text
    for text, prediction in zip(TEXTS, response.json()["predictions"], strict=True):
        probabilities, attention = torch_answer(module, encode(text))
        got = [prediction["probabilities"][label] for label in LABELS]
        np.testing.assert_allclose(got, probabilities, atol=1e-4)
        assert prediction["label"] == LABELS[int(np.argmax(probabilities))]
        if attention is None:
            assert "attention" not in prediction
        else:
            np.testing.assert_allclose(
                [w for _, w in prediction["attention"]], attention, atol=1e-4
            )
            tokens = [t for t, _ in prediction["attention"]]
            assert tokens == (tokenize(text) if name == "attn" else list(text.lower()))


def test_the_hf_tokenizer_decides_the_tokens_shown(own):
    response = httpx.post(
        f"{own['url']}/v2/models/hf/infer",
        json={"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": TEXTS[:2]}]},
    )
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert sorted(outputs) == ["label", "probabilities"]  # no attention output: the model has none
    module, encode = own["hf"]
    expected = [torch_answer(module, encode(t))[0] for t in TEXTS[:2]]
    np.testing.assert_allclose(
        np.reshape(outputs["probabilities"]["data"], (2, 2)), expected, atol=1e-4
    )
    described = httpx.get(f"{own['url']}/v1/models/hf").json()["manifest"]
    assert described["preprocessing"]["kind"] == "hf_tokenizer"
    assert described["preprocessing"]["pad_id"] == 3


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_a_scikit_learn_graph_through_the_triton_client(own, binary):
    import tritonclient.http as triton

    client = triton.InferenceServerClient(own["url"].removeprefix("http://"))
    assert client.is_model_ready("iris")
    metadata = client.get_model_metadata("iris")
    assert metadata["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}]
    x, _ = iris_like(seed=5)
    inputs = triton.InferInput("X", [7, 4], "FP32")
    inputs.set_data_from_numpy(x[:7], binary_data=binary)
    outputs = [
        triton.InferRequestedOutput(n, binary_data=binary) for n in ("label", "probabilities")
    ]
    result = client.infer("iris", [inputs], outputs=outputs)
    np.testing.assert_allclose(
        result.as_numpy("probabilities"), own["sklearn"].predict_proba(x[:7]), atol=1e-5
    )
    np.testing.assert_array_equal(result.as_numpy("label"), own["sklearn"].predict(x[:7]))


def test_a_scikit_learn_graph_over_grpc(own):
    import tritonclient.grpc as triton_grpc
    from tritonclient.utils import InferenceServerException

    x, _ = iris_like(seed=7)
    with triton_grpc.InferenceServerClient(own["grpc"]) as client:
        inputs = triton_grpc.InferInput("X", [5, 4], "FP32")
        inputs.set_data_from_numpy(x[:5])
        result = client.infer("iris", [inputs])
        np.testing.assert_allclose(
            result.as_numpy("probabilities"), own["sklearn"].predict_proba(x[:5]), atol=1e-5
        )
        wrong = triton_grpc.InferInput("X", [5, 4], "FP64")
        wrong.set_data_from_numpy(x[:5].astype(np.float64))
        with pytest.raises(InferenceServerException, match=r"input 'X' is FP64; expected"):
            client.infer("iris", [wrong])


def test_a_tensor_model_refuses_what_the_graph_does_not_take(own):
    url = f"{own['url']}/v2/models/iris/infer"
    wrong_dtype = {
        "inputs": [{"name": "X", "datatype": "FP64", "shape": [1, 4], "data": [0, 1, 2, 3]}]
    }
    response = httpx.post(url, json=wrong_dtype)
    assert response.status_code == 400
    assert response.json() == {"error": "input 'X' is FP64; expected 'X' FP32 [-1, 4] (dim0, 4)"}
    wrong_shape = {
        "inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 3], "data": [0, 1, 2]}]
    }
    assert httpx.post(url, json=wrong_shape).json() == {
        "error": "input 'X' has shape [1, 3]; expected 'X' FP32 [-1, 4] (dim0, 4)"
    }
    wrong_name = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [0, 1, 2, 3]}]
    }
    assert httpx.post(url, json=wrong_name).json() == {
        "error": "inputs ['x']: this model takes 'X' FP32 [-1, 4] (dim0, 4)"
    }


def test_v1_rows_of_a_tensor_model(own):
    x, _ = iris_like(seed=6)
    response = httpx.post(
        f"{own['url']}/v1/models/iris:predict",
        json={"instances": [{"X": row} for row in x[:3].tolist()]},
    )
    predictions = response.json()["predictions"]
    np.testing.assert_allclose(
        [p["probabilities"] for p in predictions], own["sklearn"].predict_proba(x[:3]), atol=1e-5
    )
    assert [p["label"] for p in predictions] == own["sklearn"].predict(x[:3]).tolist()
    bad = httpx.post(f"{own['url']}/v1/models/iris:predict", json={"instances": [{"X": [1, 2]}]})
    assert bad.status_code == 422 and "expected 'X' FP32 [-1, 4]" in bad.json()["error"]


def test_concurrent_requests_of_other_widths_are_answered_each_its_own(own):
    """Requests batched along the first axis only when their other dimensions agree."""
    rng = np.random.default_rng(0)
    requests = [rng.random((int(rng.integers(1, 4)), int(rng.integers(1, 6)))).astype(np.float32)
                for _ in range(48)]  # fmt: skip

    def ask(x: np.ndarray) -> list[float]:
        body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": list(x.shape),
                            "data": x.ravel().tolist()}]}  # fmt: skip
        return httpx.post(f"{own['url']}/v2/models/rowsum/infer", json=body, timeout=30).json()[
            "outputs"
        ][0]["data"]

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, requests))
    for x, answer in zip(requests, answers, strict=True):
        np.testing.assert_allclose(answer, x.sum(1), rtol=1e-5)


def test_the_page_shows_users_models(own):
    """A user's classifier with its attention, one without, and a V2 form for a tensor model."""
    from playwright.sync_api import expect

    from tests.test_ui import CHROMIUM, CHROMIUM_ARGS, Watched

    if not CHROMIUM.exists():
        pytest.skip(f"Debian's Chromium is not installed at {CHROMIUM} (`make browser`)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        watched = Watched(browser, 1100, 900)
        page = watched.page
        try:
            page.goto(f"{own['url']}/")
            for name in ("attn", "hf", "iris", "reviews", "rowsum"):
                expect(page.locator(f'.model-card[data-model="{name}"]')).to_be_visible()
            iris = page.locator('.model-card[data-model="iris"]')
            expect(iris).to_contain_text("an ONNX graph made elsewhere")

            page.get_by_label("Model", exact=True).select_option("attn")
            page.locator("#instance").fill(TEXTS[0])
            page.get_by_role("button", name="Predict").click()
            expect(page.locator("#result .tokens .token")).to_have_count(len(tokenize(TEXTS[0])))

            page.get_by_label("Model", exact=True).select_option("reviews")
            page.locator("#instance").fill(TEXTS[0])
            page.get_by_role("button", name="Predict").click()
            expect(page.locator("#result .bar")).to_have_count(2)
            expect(page.locator("#result .tokens")).to_have_count(0)

            page.get_by_label("Model", exact=True).select_option("iris")
            page.locator("button.example").first.click()
            request = json.loads(page.locator("#instance").input_value())
            assert request["inputs"][0] | {"data": None} == {
                "name": "X", "datatype": "FP32", "shape": [1, 4], "data": None,
            }  # fmt: skip
            page.get_by_role("button", name="Predict").click()
            label = page.locator('#result [data-output="label"] dd')
            expected = own["sklearn"].predict(np.zeros((1, 4), np.float32))[0]
            expect(label).to_have_text(str(expected), timeout=15_000)
            check_the_page_tells_the_truth(page, own["url"])
            watched.check_clean(own["url"])
        finally:
            watched.close()
            browser.close()


def check_the_page_tells_the_truth(page, url: str) -> None:
    """A model exported with a title, a description and examples is shown with them; one
    without is described in plain words, with no examples of another model's kind."""
    from playwright.sync_api import expect

    card = page.locator('.model-card[data-model="translate"]')
    expect(card.locator(".title")).to_have_text("French to English")
    expect(card.locator(".desc")).to_have_text(
        "The PyTorch tutorial's translator, trained on ten sentences."
    )
    page.get_by_label("Model", exact=True).select_option("translate")
    expect(page.locator("#model-summary")).to_have_text(
        "translate, version 1: French to English (The PyTorch tutorial's translator, trained "
        "on ten sentences.)."
    )
    expect(page.locator("button.example")).to_have_text(["je suis grand", "il est petit"])
    expect(page.locator("#instance")).to_have_attribute("placeholder", "je suis grand")
    page.get_by_role("button", name="il est petit").click()
    expected = httpx.post(
        f"{url}/v1/models/translate:predict",
        json={"instances": ["il est petit"], "parameters": {"attention": True}},
    ).json()["predictions"][0]
    expect(page.locator("#result .output")).to_have_text(expected["output"], timeout=15_000)
    heatmap = page.locator("#result table.heatmap")
    expect(heatmap.locator("tbody tr")).to_have_count(len(expected["output_tokens"]))
    expect(heatmap.locator("thead th")).to_have_text(expected["input_tokens"])
    expect(page.locator("#result h3")).to_have_text("Alignment: output tokens by input tokens")

    for name, what in (("s2s", "a sequence-to-sequence model"), ("attn", "a text classifier")):
        page.get_by_label("Model", exact=True).select_option(name)
        expect(page.locator("#model-summary")).to_have_text(f"{name}, version 1: {what}.")
        expect(page.locator("#examples")).to_be_hidden()
        # The panel's words, less the model list (it names the default `dates` model too).
        shown = page.locator("#try").evaluate(
            "t => { const c = t.cloneNode(true); c.querySelector('select').remove(); "
            "return c.textContent; }"
        )
        assert "date" not in shown and "film" not in shown, shown


def torch_decode(model, source: CharVocabulary, text: str, max_len: int = 12):
    """The user's encoder and decoder step, greedy, on one text alone: ids and attention."""
    chars = torch.tensor([source.encode(text)])
    with torch.no_grad():
        memory, state = model.encoder(chars, torch.tensor([chars.shape[1]]))
        mask = torch.ones_like(chars, dtype=torch.bool)
        token, ids, weights = torch.tensor([BOS_ID]), [], []
        for _ in range(max_len):
            logits, state, attention = model.decoder(token, state, memory, mask)
            token = logits.argmax(-1)
            weights.append(attention[0].numpy())
            if int(token) == EOS_ID:
                break
            ids.append(int(token))
    return ids, np.array(weights)


def test_a_users_seq2seq_modules_decode_as_in_pytorch(own):
    """Inputs of mixed lengths decoded together, step by step: each equals PyTorch alone."""
    model, source, target = own["s2s"]
    texts = ["12-3", "2020 01/07", "7", "31 12 1999"]
    response = httpx.post(
        f"{own['url']}/v1/models/s2s:predict",
        json={"instances": texts, "parameters": {"attention": True}},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len({p["output"] for p in predictions}) > 1  # random weights, yet distinct answers
    for text, prediction in zip(texts, predictions, strict=True):
        ids, attention = torch_decode(model, source, text)
        assert prediction["output"] == target.decode(ids)
        got = np.array(prediction["attention"])
        np.testing.assert_allclose(got, attention[: len(got)], atol=1e-4)
    beam = httpx.post(
        f"{own['url']}/v1/models/s2s:predict",
        json={"instances": texts[:1], "parameters": {"beam_width": 3}},
    )
    assert beam.status_code == 200 and isinstance(beam.json()["predictions"][0]["output"], str)


def torch_forecast(step, series: list[float], chunks: list[int]) -> np.ndarray:
    """The user's step module fed the series in chunks, state carried: the last forecast."""
    state, start = step.initial_state(1), 0
    with torch.no_grad():
        for n in chunks:
            values = (torch.tensor([series[start : start + n]], dtype=torch.float32) - 10) / 2
            forecast, *state = step(values, torch.tensor([n]), *state)
            start += n
    return forecast[0].numpy() * 2.0 + 10.0


def test_a_users_forecaster_streams_with_its_own_state(own):
    """Stateless predictions and a session fed in chunks equal the user's module fed whole."""
    url, step = own["url"], own["fc"]
    series = [10 + 3 * float(np.sin(i / 4)) for i in range(40)]
    response = httpx.post(
        f"{url}/v1/models/fc:predict", json={"instances": [series, series[:9], series[:1]]}
    )
    for n, prediction in zip([40, 9, 1], response.json()["predictions"], strict=True):
        assert set(prediction) == {"forecast"}  # this model has no attention
        np.testing.assert_allclose(
            prediction["forecast"], torch_forecast(step, series, [n]), atol=1e-4
        )
    opened = httpx.post(f"{url}/v1/models/fc/sessions")
    assert opened.status_code == 201, opened.text
    session = opened.json()["session_id"]
    start = 0
    for n in (5, 12, 1, 22):
        answer = httpx.post(
            f"{url}/v1/models/fc/sessions/{session}:step",
            json={"values": series[start : start + n]},
        ).json()
        start += n
        np.testing.assert_allclose(
            answer["forecast"], torch_forecast(step, series, [start]), atol=1e-4
        )
    assert answer["steps"] == 40
    # Asking for the attention it has not is said, and leaves the session as it was.
    asked = {"parameters": {"attention": True}}
    refused = [
        httpx.post(f"{url}/v1/models/fc:predict", json={"instances": [series], **asked}),
        httpx.post(f"{url}/v1/models/fc/sessions/{session}:step", json={"values": [1.0], **asked}),
    ]
    for response in refused:
        assert response.status_code == 422  # V1's status for bad input
        assert "this model has no attention output" in response.json()["error"]
    assert httpx.get(f"{url}/v1/models/fc/sessions/{session}").json()["steps"] == 40


def test_a_users_forecaster_shares_its_sessions_through_redis(own):
    """Two servers on one Redis: the user's state tensors go through the shared store's bytes,
    and steps alternating between the servers still equal the module fed whole."""
    from tests.scaleout import MISSING, have_redis, redis_server

    if not have_redis():
        pytest.skip(f"needs {MISSING}")
    step, series = own["fc"], [10 + 3 * float(np.cos(i / 3)) for i in range(30)]
    with (
        redis_server() as store,
        live_server(own["repository"], session_store=store, grpc_port="0") as a,
        live_server(own["repository"], session_store=store, grpc_port="0") as b,
    ):
        session = httpx.post(f"{a}/v1/models/fc/sessions").json()["session_id"]
        start = 0
        for url, n in ((a, 4), (b, 11), (a, 15)):
            answer = httpx.post(
                f"{url}/v1/models/fc/sessions/{session}:step",
                json={"values": series[start : start + n]},
            ).json()
            start += n
            expected = torch_forecast(step, series, [start])
            np.testing.assert_allclose(answer["forecast"], expected, atol=1e-4)


def test_the_pytorch_tutorials_translator_serves_its_own_greedy_decode(own):
    """Word-level, SOS=0 and EOS=1, no id remapped: mixed lengths decoded together, each equal
    to the tutorial's own `evaluate` (its words and its attention)."""
    tutorial, encoder, decoder, fra, eng = own["translate"]
    sentences = [s for s, _ in PAIRS] + ["il est fatigue", "nous sommes grand", "tu es petit"]
    response = httpx.post(
        f"{own['url']}/v1/models/translate:predict",
        json={"instances": sentences, "parameters": {"attention": True}},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    for sentence, prediction in zip(sentences, predictions, strict=True):
        words, attention = tutorial.evaluate(encoder, decoder, sentence, fra, eng)
        ended = words[-1:] == ["<EOS>"]
        words = words[:-1] if ended else words
        assert prediction["output"] == " ".join(words)
        assert prediction.get("reached_max_length", False) is not ended
        assert prediction["input_tokens"] == [*sentence.split(" "), "EOS"]
        assert prediction["output_tokens"] == words
        np.testing.assert_allclose(
            prediction["attention"], attention[0, : len(words)].numpy(), atol=1e-4
        )
    learned = [p["output"] == target for p, (_, target) in zip(predictions, PAIRS, strict=False)]
    assert sum(learned) >= 5, predictions  # a few steps of training, yet mostly right
    unknown = httpx.post(
        f"{own['url']}/v1/models/translate:predict", json={"instances": ["je suis zzz"]}
    )
    assert unknown.status_code == 422
    assert unknown.json() == {"error": "instances[0]: 'zzz' is not in the model's vocabulary"}
    manifest = httpx.get(f"{own['url']}/v1/models/translate").json()["manifest"]
    assert (manifest["title"], manifest["examples"]) == (
        "French to English", ["je suis grand", "il est petit"],
    )  # fmt: skip
    prep = manifest["preprocessing"]
    assert (prep["bos_id"], prep["eos_id"], prep["input_eos_id"]) == (0, 1, 1)


# -- the README's curl commands, run as written --------------------------------------------------


def readme_curls() -> list[tuple[str, object]]:
    """Each `curl` command of README.md's sh blocks as written (its continuation lines too),
    with the JSON block printed right after its block, if any: the answer it shows."""
    import re
    import shlex

    blocks = re.findall(r"```(\w*)\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    commands: list[tuple[str, object]] = []
    for k, (language, body) in enumerate(blocks):
        if language != "sh":
            continue
        found: list[str] = []
        for line in body.splitlines():
            if found and not complete(found[-1]):
                found[-1] += "\n" + line
            elif line.startswith("curl "):
                found.append(line)
        shown = None
        if len(found) == 1 and k + 1 < len(blocks) and blocks[k + 1][0] == "json":
            shown = json.loads(blocks[k + 1][1])
        commands += [(command, shown) for command in found]
        assert all(shlex.split(c, comments=True)[0] == "curl" for c in found)
    return commands


def complete(command: str) -> bool:
    import shlex

    try:
        shlex.split(command, comments=True)
    except ValueError:  # a quote still open: the JSON goes on on the next line
        return False
    return not command.rstrip().endswith("\\")


def test_every_curl_in_the_readme_runs_as_written_and_answers_what_it_says(own):
    """Without `-H 'Content-Type: application/json'` too; host and port are this server's, and
    a session id is the one the previous command created."""
    import shutil

    from tests.test_golden_answers import differences

    if shutil.which("curl") is None:
        pytest.skip("curl is not installed (Debian's curl package)")
    commands = readme_curls()
    checked: list[str] = []
    session = ""
    for command, shown in commands:
        ran = command.replace("localhost:8000", own["url"].removeprefix("http://"))
        ran = ran.replace("/sessions/ID:", f"/sessions/{session}:")
        done = subprocess.run(["bash", "-c", ran], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, (command, done.stderr)
        answer = json.loads(done.stdout)
        assert "error" not in answer, (command, answer)
        path = command.split("localhost:8000", 1)[1].split()[0]
        checked.append(path)
        if path == "/v1/models/sst2-lstm:predict":  # the README prints the real answer
            assert shown is not None, "the README shows the first example's answer"
            assert differences(answer, shown, atol=1e-3, rtol=0.0) == []
        elif path == "/v1/models/reviews:predict":
            module, encode = own["reviews"]
            (prediction,) = answer["predictions"]
            probabilities, _ = torch_answer(module, encode("a gripping film"))
            got = [prediction["probabilities"][label] for label in LABELS]
            np.testing.assert_allclose(got, probabilities, atol=1e-4)
            assert prediction["label"] == LABELS[int(np.argmax(probabilities))]
        elif path.startswith("/v2/models/iris/infer"):
            x = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], np.float32)
            outputs = {o["name"]: o["data"] for o in answer["outputs"]}
            np.testing.assert_allclose(
                np.reshape(outputs["probabilities"], (2, -1)),
                own["sklearn"].predict_proba(x),
                atol=1e-5,
            )
        elif path == "/v1/models/iris:predict":
            x = np.array([[5.1, 3.5, 1.4, 0.2]], np.float32)
            (prediction,) = answer["predictions"]
            np.testing.assert_allclose(
                prediction["probabilities"], own["sklearn"].predict_proba(x)[0], atol=1e-5
            )
        elif path == "/v1/models/dates:predict":
            (prediction,) = answer["predictions"]
            assert prediction["output"] == "2026-11-22"  # what the README says it answers
            assert len(prediction["attention"]) == len(prediction["output_chars"])
        elif path == "/v1/models/co2-gru/sessions":
            session = answer["session_id"]
        elif path == "/v1/models/co2-gru/sessions/ID:step":
            assert answer["steps"] == 2 and len(answer["forecast"]) == 13
            assert len(answer["attention"]) == 2  # over the two values seen
        else:
            raise AssertionError(f"the README's {command!r} has no check here: add one")
    assert len(checked) == 7, checked
