"""Where the model repository's versions come from: a local folder, or object storage mirrored
into a local cache. Either way the repository sees version folders on local disk."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from contract.object_store import is_store_url
from service.discovery import discover
from service.settings import Settings


class RepositorySource(Protocol):
    folder: Path  # where the version folders are: the repository, or the cache

    def discover(self) -> dict[str, dict[int, Path]]:
        """Blocking: every complete version as a local folder, by model name and number."""
        ...


class FolderSource:
    def __init__(self, folder: Path, model_name: str | None = None) -> None:
        self.folder = folder
        self.model_name = model_name  # the folder may be that one model's (KServe)

    def discover(self) -> dict[str, dict[int, Path]]:
        return discover(self.folder, self.model_name)


def open_source(settings: Settings) -> RepositorySource:
    if is_store_url(settings.model_repository):
        from service.store_source import StoreSource

        return StoreSource(str(settings.model_repository), settings.cache_folder())
    return FolderSource(Path(settings.model_repository), settings.model_name)
