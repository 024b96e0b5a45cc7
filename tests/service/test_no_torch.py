"""The service must run where torch cannot be imported."""

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys
sys.modules["torch"] = None  # any `import torch` now raises ImportError
from fastapi.testclient import TestClient
from service.app import create_app
from service.settings import Settings

app = create_app(Settings(model_repository=sys.argv[1], providers="cpu"))
with TestClient(app) as client:
    import time
    deadline = time.monotonic() + 60
    while client.get("/v2/health/ready").status_code != 200:
        assert time.monotonic() < deadline, "not ready within 60 s"
        time.sleep(0.05)
    body = client.post("/v1/models/tiny-lstm:predict", json={"instances": ["great"]}).json()
    assert body["predictions"][0]["label"] in ("negative", "positive"), body
loaded = {name.split(".")[0] for name in sys.modules if sys.modules[name] is not None}
assert not loaded & {"torch", "model_src", "export"}, loaded & {"torch", "model_src", "export"}
print("served without torch")
"""


def test_service_serves_without_torch(tiny_repository: Path):
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tiny_repository)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "served without torch" in result.stdout


def test_neither_service_nor_contract_imports_torch_or_training_code():
    """The static side of the import-linter contracts (`make lint`), also under `pytest`."""
    root = Path(__file__).resolve().parents[2]
    forbidden = ("torch", "model_src", "export")
    for package in ("service", "contract"):
        for path in (root / package).rglob("*.py"):
            for line in path.read_text().splitlines():
                words = line.split()
                if words[:1] in (["import"], ["from"]) and len(words) > 1:
                    assert words[1].split(".")[0] not in forbidden, f"{path}: {line}"
