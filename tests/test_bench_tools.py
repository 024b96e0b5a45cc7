"""The benchmarks' own parts that a wrong figure would come from: the workloads they send, the
CPU split they read from /proc, and the peers report. (The benchmarks themselves run under
`make bench` and `make bench-peers`, not here.)"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench import cpusplit, workloads
from bench.peers import report
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent


def test_the_real_workload_is_the_dev_split_in_file_order(tiny_corpus):
    header, *dev = (tiny_corpus / "dev.tsv").read_text().splitlines()
    column = header.split("\t").index("sentence")  # columns by header, as GLUE ships them
    loaded = workloads.load("sst2-dev", tiny_corpus)
    assert loaded.texts == [line.split("\t")[column] for line in dev]
    assert str(len(dev)) in loaded.description


def test_a_missing_dev_split_says_where_it_looked(tmp_path):
    with pytest.raises(SystemExit, match=r"no SST-2 dev split in .*data/README.md"):
        workloads.load("sst2-dev", tmp_path)


def test_ids_keep_their_real_length_and_the_peers_get_them_padded():
    folder = ROOT / "models" / "sst2-lstm" / "1"
    ids = workloads.token_ids(folder, ["a gripping , funny film", "dull"])
    assert [len(x) for x in ids] == [5, 1]
    v2 = workloads.v2_tokens(ids)
    assert v2[1]["inputs"][0] == {"name": "tokens", "shape": [1, 1], "datatype": "INT64",
                                  "data": ids[1]}  # fmt: skip
    padded = workloads.padded(ids, 8)
    assert padded[1] == ([*ids[1], 0, 0, 0, 0, 0, 0, 0], 1)
    assert all(len(row) == 8 for row, _ in padded)


def test_the_cpu_split_finds_a_busy_named_thread_of_a_live_process():
    """A process whose main thread idles while a thread named as rnnserve names its batch
    thread spins: the split must charge the work to the batch thread."""
    script = textwrap.dedent(
        """
        import signal, threading
        from service.threads import name_os_thread

        def spin():
            name_os_thread("rnnserve-batch")
            while True:
                sum(range(1000))

        threading.Thread(target=spin, daemon=True).start()
        signal.pause()  # the main thread idles until the test kills the process
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    try:

        def named() -> list[cpusplit.Thread]:
            return [t for t in cpusplit.threads(process.pid) if t.name == "rnnserve-batch"]

        wait_for(lambda: bool(named()), "the thread's name in /proc")
        with cpusplit.measure(process.pid) as split:
            start = named()[0].cpu_s
            wait_for(lambda: named()[0].cpu_s >= start + 0.05, "0.05 s of the thread's CPU")
        assert split.roles["batch thread"] > 0
        assert split.roles["batch thread"] > 4 * split.roles["event loop"]
        assert split.machine >= split.roles["batch thread"] * 0.5
        assert process.pid in cpusplit.descendants(process.pid)
        assert cpusplit.process_name(process.pid) == "python -c"
    finally:
        process.kill()
        process.wait()


def test_the_combined_limit_is_the_lower_of_the_cores_and_the_event_loop():
    split = cpusplit.Split(seconds=1.0, roles={"event loop": 0.8, "onnxruntime": 0.4},
                           load_generator=0.4, machine=1.7)  # fmt: skip
    # 1,000 req/s: 1.6 cores in all -> 2 cores carry 1,250; the loop alone carries 1,250 too.
    limit = cpusplit.limit(1000, split)
    assert limit["combined_limit"] == pytest.approx(cpusplit.CORES / 1.6e-3)
    loop_bound = cpusplit.limit(1000, cpusplit.Split(1.0, {"event loop": 0.95}, 0.05, 1.0))
    assert loop_bound["bound_by"] == "event loop" or cpusplit.CORES < 2
    assert split.other_processes == pytest.approx(0.1)


def test_the_peers_report_gives_each_row_its_ratio_and_draws_the_charts(tmp_path):
    def cell(rps: float) -> dict:
        cpu = {"roles": {"event loop": 0.5}, "server": 0.5, "load_generator": 0.3,
               "other_processes": 0.1, "machine": 0.9}  # fmt: skip
        return {"rps": rps, "p50_ms": 1.0, "p90_ms": 2.0, "p99_ms": 3.0, "failed": 0, "cpu": cpu}

    result = {
        "date": "2026-12-02 06:00 UTC", "command": "python -m bench.peers", "seconds_total": 60,
        "rounds": 3, "seconds_per_cell": 4, "levels": [1, 64], "cores": 2,
        "workloads": {"sst2-dev": {"description": "SST-2 dev", "lengths": "1-9 tokens",
                                   "peer_width": 9}},
        "settings": {"rnnserve": {"defaults": True}, "Triton": {"max_queue_delay_microseconds": 0}},
        "delays": {"Triton": 0},
        "sweeps": {"Triton": {0: {"1": {"rps": 150, "p50_ms": 6.0, "failed": 0},
                                  "64": {"rps": 1100, "p50_ms": 50.0, "failed": 0}}}},
        "table": {"sst2-dev": {"rnnserve V2 ids": {1: cell(400), 64: cell(1000)},
                               "Triton": {1: cell(200), 64: cell(1100)}}},
    }  # fmt: skip
    charts = report.charts(result, tmp_path)
    assert [c.name for c in charts] == ["peers-sst2-dev.png"]
    assert charts[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    section = report.markdown(result, charts)
    assert "| Triton | 200 | 1.00 | 3.0 | 0.50 | 1,100 | 1.00 | 3.0 | 1.10 |" in section
    assert "| Triton | **0 us** | 150 | 6.00 | 1,100 |" in section
    assert "a peer answered as many requests per second as rnnserve or more: Triton at c=64" in (
        section
    )
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{report.BEGIN}\nstale figures\n{report.END}\nafter\n")
    report.update_readme(readme, section)
    content = readme.read_text()
    assert content.startswith("before\n") and content.endswith("after\n")
    assert "stale figures" not in content and "![peers-sst2-dev](peers-sst2-dev.png)" in content
