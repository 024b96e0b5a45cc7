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
