"""The project's own promises: CI runs the README's test command, defaults are committed."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert readme.index("make serve") < readme.index("make test") < readme.index("curl")


def test_default_models_are_small_and_complete():
    from contract.manifest import Manifest

    names = sorted(p.name for p in (ROOT / "models").iterdir() if p.is_dir())
    assert {"sst2-lstm", "sst2-gru", "sst2-lstm-int8", "dates", "co2-gru"} <= set(names)
    for name in names:
        versions = [p for p in (ROOT / "models" / name).iterdir() if p.name.isdigit()]
        assert versions, name
        for folder in versions:
            manifest = Manifest.read(folder)
            assert {p.name for p in folder.iterdir()} == {"manifest.json", *manifest.files}
            assert sum(p.stat().st_size for p in folder.iterdir()) < 10 * 2**20


DOCS = ("README.md", "bench/README.md")


def _make_targets() -> set[str]:
    import re

    makefile = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w.-]*)\s*:(?!=)", makefile, re.MULTILINE))


def test_every_make_target_the_readmes_name_exists():
    import re

    targets = _make_targets()
    named = {
        (doc, target)
        for doc in DOCS
        for target in re.findall(r"\bmake ([a-z][\w.-]*)", (ROOT / doc).read_text())
        if not target.startswith(".")  # `make .venv/.all` is a file target
    }
    assert named, "the READMEs name no make target"
    assert {(doc, t) for doc, t in named if t not in targets} == set()


def test_every_bench_module_the_readmes_name_exists():
    import re

    named = {
        (doc, module)
        for doc in DOCS
        for module in re.findall(r"python -m (bench(?:\.\w+)?)", (ROOT / doc).read_text())
    }
    assert ("bench/README.md", "bench.grpc") in named
    missing = {
        (doc, m)
        for doc, m in named
        if not (ROOT / (m.replace(".", "/") + ".py")).is_file()
        and not (ROOT / m.replace(".", "/") / "__main__.py").is_file()
    }
    assert missing == set()


def test_every_bench_module_make_bench_runs_is_in_the_bench_readme():
    import re

    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile[makefile.index("\nbench:") :].split("\n\n")[0]
    run = set(re.findall(r"-m (bench(?:\.\w+)?)", recipe))
    table = (ROOT / "bench" / "README.md").read_text().split("\n\n")[2]  # the command table
    assert {m for m in run if f"python -m {m}`" not in table} == set()


def test_make_protos_keeps_the_protobuf_floor(tmp_path):
    """The gRPC modules `make protos` writes demand no newer protobuf than pyproject.toml's
    floor, and are the committed ones."""
    import re
    import subprocess
    import tomllib

    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    floor = next(d for d in dependencies if d.startswith("protobuf>=")).removeprefix("protobuf>=")
    subprocess.run(
        ["make", "-s", "protos", f"PROTOS_OUT={tmp_path}"], cwd=ROOT, check=True, timeout=120
    )
    made = {
        n: (tmp_path / "service" / "rpc" / n).read_text()
        for n in ("inference_pb2.py", "inference_pb2.pyi")
    }
    for name, text in made.items():
        assert text == (ROOT / "service" / "rpc" / name).read_text(), name
    needs = re.search(r"Domain\.PUBLIC,\s*(\d+),\s*(\d+),\s*(\d+),", made["inference_pb2.py"])
    assert needs is not None and ".".join(needs.groups()) == floor


def test_the_readme_describes_the_default_networks_as_their_manifests_do():
    """ "BiLSTM 2x128" read as two layers; each row says its layers and size per direction."""
    import re

    from contract.manifest import Manifest

    rows = re.findall(r"^\| `(sst2-[a-z]+)` \| ([^|]+) \|", (ROOT / "README.md").read_text(), re.M)
    assert {name for name, _ in rows} == {"sst2-lstm", "sst2-gru"}
    words = {1: "one layer", 2: "two layers", 3: "three layers"}
    for name, network in rows:
        architecture = Manifest.read(ROOT / "models" / name / "1").architecture
        assert architecture is not None and architecture.bidirectional
        assert words[architecture.num_layers] in network, (name, network)
        assert f"{architecture.hidden_size} per direction" in network, (name, network)
        assert not re.search(r"\dx\d", network), (name, network)
