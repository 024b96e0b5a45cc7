"""`rnnserve export --task wordcount --module ... --vocab ...`: the task's flags (torch-free)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from export.commands import MODULE, ExportCommand, Flag, build_module


def publish(given: dict[str, Any], **common: Any) -> Path | str:
    from contract.words import Vocabulary
    from export.api import publish_exporter
    from tests.plugin_task.export import WordCountExporter

    exporter = WordCountExporter(build_module(given), Vocabulary.load(given.pop("vocab")))
    return publish_exporter("wordcount", exporter, **common)


VOCAB = Flag(("--vocab",), "vocab", "one token a line, <pad> and <unk> first", {"type": Path})
COMMAND = ExportCommand((*MODULE, VOCAB), ("module", "vocab"), publish)
