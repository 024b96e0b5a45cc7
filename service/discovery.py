"""What is on disk: the model repository's version folders, the version policy, and a cheap
fingerprint that tells whether a folder changed since it was last tried."""

from __future__ import annotations

import re
from pathlib import Path

from contract.graphs import GRAPH_FILE
from contract.manifest import MANIFEST_FILE, MODEL_NAME, version_number

POLICY = re.compile(r"^(all|latest(?::([1-9][0-9]*))?)$")
Fingerprint = tuple[tuple[str, int, int], ...]


def discover(root: Path, model_name: str | None = None) -> dict[str, dict[int, Path]]:
    """Every <name>/<version>/ folder; anything else (hidden staging folders) is ignored.

    Given `model_name` (KServe's --model_name), the root may also be that one model's folder,
    as KServe's storage initializer leaves it in /mnt/models: <version>/ folders, or one
    version's files (a manifest and its graphs, or a bare model.onnx) served as version 1.
    """
    if not root.is_dir():
        raise FileNotFoundError(f"the model repository {root} is not a folder")
    if model_name is not None and (versions := one_model(root)):
        return {model_name: versions}
    found: dict[str, dict[int, Path]] = {}
    for model_dir in sorted(root.iterdir()):
        if not model_dir.is_dir() or not MODEL_NAME.match(model_dir.name):
            continue
        versions = {
            number: d
            for d in model_dir.iterdir()
            if d.is_dir() and (number := version_number(d.name)) is not None
        }
        if versions:
            found[model_dir.name] = versions
    return found


def one_model(folder: Path) -> dict[int, Path]:
    """The versions of one model's folder (empty if it is not one)."""
    if is_version_folder(folder):
        return {1: folder}
    return {
        number: d
        for d in folder.iterdir()
        if d.is_dir() and (number := version_number(d.name)) is not None and is_version_folder(d)
    }


def is_version_folder(folder: Path) -> bool:
    return (folder / MANIFEST_FILE).is_file() or (folder / GRAPH_FILE).is_file()


def misplaced(root: Path) -> str:
    """Why a repository with no model may be the wrong folder, or "" if it looks empty."""
    if one_model(root):
        return (
            f"{root} looks like one model's folder, not a repository of <name>/<version>/ "
            "folders: name the model with --model_name (RNNSERVE_MODEL_NAME) to serve it"
        )
    return ""


def check_policy(policy: str) -> str:
    """`all`, or `latest:N` (the N highest; `latest` alone is `latest:1`)."""
    if POLICY.match(policy) is None:
        raise ValueError(f"version policy {policy!r} is not 'all' or 'latest:N'")
    return policy


def select_versions(policy: str, versions: list[int]) -> list[int]:
    """The versions `policy` serves out of `versions`, ascending."""
    match = POLICY.match(check_policy(policy))
    assert match is not None
    if match.group(1) == "all":
        return sorted(versions)
    return sorted(versions)[-int(match.group(2) or 1) :]


def fingerprint(folder: Path) -> Fingerprint:
    """Names, sizes and modification times of a folder's files: any edit changes it."""
    try:
        entries = [(p.name, p.stat()) for p in folder.iterdir()]
    except OSError:
        return ()
    return tuple(sorted((name, st.st_size, st.st_mtime_ns) for name, st in entries))
