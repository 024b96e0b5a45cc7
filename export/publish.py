"""Publish a finished version folder into the model repository atomically."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from contract.manifest import version_number


def existing_versions(model_dir: Path) -> list[int]:
    if not model_dir.is_dir():
        return []
    numbers = (version_number(p.name) for p in model_dir.iterdir() if p.is_dir())
    return sorted(n for n in numbers if n is not None)


def publish(repository: Path, name: str, write: Callable[[Path, int], None]) -> Path:
    """Write a new version into a hidden temporary folder, then rename it into place.

    `write(folder, version)` fills the folder. A watcher never sees a half-written version:
    the rename is atomic, and a concurrent publisher that took the number first makes us
    retry with the next one.
    """
    model_dir = repository / name
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=model_dir))
    staging.chmod(0o755)  # mkdtemp makes it private; servers may run as another user
    try:
        for _ in range(100):
            version = max(existing_versions(model_dir), default=0) + 1
            write(staging, version)
            target = model_dir / str(version)
            try:
                os.rename(staging, target)  # fails if the target exists and is not empty
            except OSError:
                if not target.exists():
                    raise
                continue
            return target
        raise RuntimeError(f"could not find a free version number under {model_dir}")
    finally:
        if staging.exists():
            shutil.rmtree(staging)
