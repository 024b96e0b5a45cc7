"""A real server against what clients and operators get wrong: clients that hang up mid-body,
settings that are invalid. Neither may show up as a server error."""

import asyncio
import os
import re
import subprocess
import sys

import httpx
import pytest

from tests.live_server import error_records, hang_up_mid_body, live_server


def metric(text: str, name: str) -> float:
    return sum(
        float(m) for m in re.findall(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    )


def test_clients_hanging_up_mid_body_are_counted_not_logged_as_errors(tiny_repository, tmp_path):
    log = tmp_path / "server.log"
    with live_server(tiny_repository, log_file=log, log_level="info") as url:
        host, port = url.removeprefix("http://").split(":")
        asyncio.run(hang_up_mid_body(host, int(port), clients=300))
        answer = httpx.post(f"{url}/v1/models/tiny-lstm:predict", json={"instances": ["great"]})
        assert answer.status_code == 200 and answer.json()["predictions"][0]["label"]
        metrics = httpx.get(f"{url}/metrics").text
    assert metric(metrics, "rnnserve_client_disconnects_total") == 300
    assert error_records(log) == []
    lines = log.read_text().splitlines()
    assert not any("Traceback" in line or "ClientDisconnect" in line for line in lines)
    hangups = [line for line in lines if '"status": 499' in line]
    assert len(hangups) == 300  # one short access line each, nothing more


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("RNNSERVE_MODEL_VERSION_POLICY", '{"tiny-lstm": "newest"}', "['tiny-lstm']"),
        ("RNNSERVE_BATCHING__MAX_BATCH_SIZE", "0", ""),
        ("RNNSERVE_MODEL_REPOSITORY", "/no/such/folder", ""),
    ],
)
def test_an_invalid_setting_stops_the_server_with_its_name(tiny_repository, variable, value, named):
    env = {**os.environ, "RNNSERVE_MODEL_REPOSITORY": str(tiny_repository), variable: value}
    done = subprocess.run(
        [sys.executable, "-m", "service", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert f"invalid setting {variable}{named}" in done.stderr
    assert "Traceback" not in done.stderr
