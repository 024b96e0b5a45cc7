"""Users' models exported with small serving limits load, warm up and serve: the warm-up input
is made from each manifest (its vocabulary, within its limits), not a fixed text longer than
the limit. A limit under which nothing could be served is refused at export."""

from __future__ import annotations

import json

import pytest

from contract.chars import SPECIALS, CharVocabulary
from export.__main__ import main as export
from tests.conftest import ROOT, wait_ready

pytestmark = pytest.mark.slow
USER_MODELS = ROOT / "tests" / "user_models"
VOCAB = ["[UNK]", *"abcdefghij ", "[PAD]"]
INPUTS, OUTPUTS = [*SPECIALS, *"0123456789 -/"], [*SPECIALS, *"0123456789-"]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A classifier taking 3 tokens, a seq2seq model 12 characters, a forecaster 2 values."""
    work = tmp_path_factory.mktemp("small")
    repository = str(work / "models")
    (work / "vocab.txt").write_text("".join(f"{t}\n" for t in VOCAB))
    (work / "classify.json").write_text(
        json.dumps({"kind": "AttentionLSTM", "vocab_size": len(VOCAB), "pad_id": len(VOCAB) - 1})
    )
    export(["--task", "classify", "--module", f"{USER_MODELS / 'modules.py'}:build",
            "--config", str(work / "classify.json"), "--vocab", str(work / "vocab.txt"),
            "--tokenizer", "chars", "--pad-token", "[PAD]", "--unk-token", "[UNK]",
            "--labels", "negative,positive", "--max-tokens", "3", "--name", "three",
            "--repository", repository])  # fmt: skip
    CharVocabulary(tuple(INPUTS)).save(work / "in.txt")
    CharVocabulary(tuple(OUTPUTS)).save(work / "out.txt")
    (work / "s2s.json").write_text(
        json.dumps({"input_size": len(INPUTS), "output_size": len(OUTPUTS), "size": 8})
    )
    export(["--task", "seq2seq", "--module", f"{USER_MODELS / 'seq2seq.py'}:build",
            "--config", str(work / "s2s.json"), "--input-vocab", str(work / "in.txt"),
            "--output-vocab", str(work / "out.txt"), "--max-input-chars", "12",
            "--max-output-chars", "4", "--name", "twelve", "--repository", repository])  # fmt: skip
    export(["--task", "forecast", "--module", f"{USER_MODELS / 'forecast.py'}:build",
            "--max-values", "2", "--name", "two", "--repository", repository])  # fmt: skip
    return work


def test_models_with_small_limits_load_and_serve(small):
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    app = create_app(Settings(model_repository=small / "models", providers="cpu"))
    with TestClient(app) as client:
        wait_ready(client)  # strict readiness: every version warmed up
        states = {m["name"]: m["ready"] for m in client.get("/v1/models").json()["models"]}
        assert states == {"three": True, "twelve": True, "two": True}

        three = client.post("/v1/models/three:predict", json={"instances": ["abc", "j"]})
        assert three.status_code == 200, three.text
        assert [sorted(p["probabilities"]) for p in three.json()["predictions"]] == [
            ["negative", "positive"]
        ] * 2
        too_long = client.post("/v1/models/three:predict", json={"instances": ["abcd"]})
        assert too_long.status_code == 422 and "at most 3" in too_long.json()["error"]

        body = {"instances": ["1999-12-31 0"], "parameters": {"attention": True}}
        twelve = client.post("/v1/models/twelve:predict", json=body)
        assert twelve.status_code == 200, twelve.text
        (prediction,) = twelve.json()["predictions"]
        assert len(prediction["input_chars"]) == 12 and len(prediction["output_chars"]) <= 4

        two = client.post("/v1/models/two:predict", json={"instances": [[1.0, 2.0]]})
        assert two.status_code == 200, two.text
        assert len(two.json()["predictions"][0]["forecast"]) == 3  # the module's horizon


@pytest.mark.parametrize(
    ("task", "flag"),
    [("classify", "--max-tokens"), ("seq2seq", "--max-input-chars"),
     ("seq2seq", "--max-output-chars"), ("forecast", "--max-values")],
)  # fmt: skip
def test_a_limit_that_leaves_no_input_is_refused_at_export(small, tmp_path, capsys, task, flag):
    argv = {
        "classify": ["--module", f"{USER_MODELS / 'modules.py'}:build", "--config",
                     str(small / "classify.json"), "--vocab", str(small / "vocab.txt"),
                     "--tokenizer", "chars", "--pad-token", "[PAD]", "--unk-token", "[UNK]",
                     "--labels", "negative,positive"],
        "seq2seq": ["--module", f"{USER_MODELS / 'seq2seq.py'}:build", "--config",
                    str(small / "s2s.json"), "--input-vocab", str(small / "in.txt"),
                    "--output-vocab", str(small / "out.txt")],
        "forecast": ["--module", f"{USER_MODELS / 'forecast.py'}:build"],
    }[task]  # fmt: skip
    with pytest.raises(SystemExit) as exit_:
        export(["--task", task, *argv, flag, "0", "--name", "none", "--repository",
                str(tmp_path)])  # fmt: skip
    assert exit_.value.code == 1
    assert capsys.readouterr().err == (
        f"rnnserve export: refused: {flag} 0 leaves no input that can be served; give 1 or more\n"
    )
    assert not (tmp_path / "none").exists()
