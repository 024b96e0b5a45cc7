"""A task registered by another distribution's entry point is served end to end, without torch.

The task lives only under tests/plugin_task; a `.dist-info` folder with a real
`entry_points.txt` (what `pip install` writes) is its whole registration.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from contract.manifest import (
    Manifest,
)
from contract.words import Vocabulary
from tests.conftest import ROOT

VOCAB = Vocabulary(("<pad>", "<unk>", "the", "film", "is", "great"))

SCRIPT = """
import json, sys, time
sys.modules["torch"] = None  # any `import torch` now raises ImportError
sys.path.insert(0, sys.argv[2])  # where the plugin's distribution metadata is installed
from fastapi.testclient import TestClient
from service.app import create_app
from service.settings import Settings
from tests.conftest import wait_ready

with TestClient(create_app(Settings(model_repository=sys.argv[1], providers="cpu"))) as client:
    wait_ready(client)
    answers = {
        "listed": client.get("/v1/models").json(),
        "v1": client.post(
            "/v1/models/counter:predict",
            json={"instances": ["the film is great", "the plot is zzz and qqq"]},
        ).json(),
        "v2": client.post(
            "/v2/models/counter/infer",
            json={"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["zzz"]}]},
        ).json(),
        "bad": client.post("/v1/models/counter:predict", json={"instances": [7]}).json(),
    }
answers["imported"] = sorted(
    {n.split(".")[0] for n in sys.modules if sys.modules[n] is not None}
    & {"torch", "model_src", "export"}
)
print(json.dumps(answers))
"""


def export_counter(repository: Path, site: Path, *extra: str) -> str:
    """`rnnserve export --task wordcount` publishes the plugin's PyTorch module, through the
    export command its registration names (what the service never imports)."""
    vocab = site.parent / "vocab.txt"
    VOCAB.save(vocab)
    module = f"{ROOT / 'tests' / 'plugin_task' / 'model.py'}:UnknownCounter"
    argv = ["export", "--task", "wordcount", "--module", module, "--vocab", str(vocab),
            "--name", "counter", "--repository", str(repository), *extra]  # fmt: skip
    entry = (
        f"import sys; sys.path.insert(0, {str(site)!r}); from cli import main; main(sys.argv[1:])"
    )
    result = subprocess.run(
        [sys.executable, "-c", entry, *argv], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def install_plugin_metadata(site: Path) -> None:
    """What `pip install rnnserve-wordcount` leaves: a dist-info folder naming the entry point."""
    dist = site / "rnnserve_wordcount-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: rnnserve-wordcount\nVersion: 0.1\n"
    )
    (dist / "entry_points.txt").write_text("[rnnserve.tasks]\nwordcount = tests.plugin_task:TASK\n")


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("plugin")
    install_plugin_metadata(root / "site")
    printed = export_counter(root / "models", root / "site")
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(root / "models"), str(root / "site")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return {"printed": printed, **json.loads(result.stdout.strip().splitlines()[-1])}


def test_the_plugin_task_is_exported_by_rnnserve_export_from_its_module(served, tmp_path):
    folder = Path(served["printed"].removeprefix("published ").strip())
    assert folder.name == "1" and folder.parent.name == "counter"
    manifest = Manifest.read(folder)
    assert (manifest.task, manifest.origin) == ("wordcount", "module")
    assert manifest.export.parity_max_abs_diff == 0.0  # counts are exact
    assert manifest.preprocessing.vocab_size == len(VOCAB)


def test_a_task_flag_the_plugin_does_not_take_is_refused(tmp_path):
    install_plugin_metadata(tmp_path / "site")
    with pytest.raises(AssertionError, match="--task wordcount does not take --labels"):
        export_counter(tmp_path / "models", tmp_path / "site", "--labels", "a,b")


def test_the_plugin_task_is_listed_under_its_own_name(served):
    assert {"name": "counter", "task": "wordcount"}.items() <= served["listed"]["models"][0].items()


def test_the_plugin_task_answers_v1_from_its_graph(served):
    assert served["v1"]["predictions"] == [
        {"words": 4, "unknown_words": 0},
        {"words": 6, "unknown_words": 4},  # plot, zzz, and, qqq
    ]
    assert served["bad"] == {"error": "instances[0] must be a text with words"}


def test_the_plugin_task_answers_v2(served):
    (output,) = served["v2"]["outputs"]
    assert output["name"] == "unknown" and output["data"] == [1.0]


def test_serving_a_plugin_task_imports_neither_torch_nor_training_code(served):
    assert served["imported"] == []


def test_without_its_distribution_the_task_is_unknown():
    from contract import registry

    assert "wordcount" not in registry.tasks()
    with pytest.raises(ValueError, match="task 'wordcount' is not served"):
        registry.get("wordcount")
