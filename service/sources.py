"""Where the model repository's versions come from: a local folder, or object storage mirrored
into a local cache. Either way the repository sees version folders on local disk."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from contract.object_store import is_store_url
from service.discovery import discover
from service.settings import Settings


class RepositorySource(Protocol):
    def discover(self) -> dict[str, dict[int, Path]]:
        """Blocking: every complete version as a local folder, by model name and number."""
        ...


class FolderSource:
    def __init__(self, root: Path) -> None:
        self.root = root

    def discover(self) -> dict[str, dict[int, Path]]:
        return discover(self.root)


def open_source(settings: Settings) -> RepositorySource:
    if is_store_url(settings.model_repository):
        from service.store_source import StoreSource

        return StoreSource(str(settings.model_repository), settings.cache_folder())
    return FolderSource(Path(settings.model_repository))
