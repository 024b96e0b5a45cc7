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
