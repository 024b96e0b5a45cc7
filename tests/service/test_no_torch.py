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
assert not any(name == "torch" or name.startswith("torch.") for name in sys.modules
               if sys.modules[name] is not None)
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


def test_no_service_module_imports_torch():
    service = Path(__file__).resolve().parents[2] / "service"
    for path in service.rglob("*.py"):
        for line in path.read_text().splitlines():
            assert not line.lstrip().startswith(("import torch", "from torch")), path
