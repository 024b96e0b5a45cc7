"""Flags from a config dataclass: one per field, typed by its hint, the same for every trainer."""

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from model_src.flags import parse_config


@dataclass
class Config:
    out: Path
    cell: str = field(default="gru", metadata={"choices": ["lstm", "gru"]})
    labels: list[str] | None = None
    epochs: int = 4
    lr: float = 3e-3
    bidirectional: bool = True


def test_every_field_is_a_typed_flag():
    cfg = parse_config(
        Config,
        ["--out", "o", "--cell", "lstm", "--labels", "neg,pos", "--epochs=7", "--lr", "0.5"],
        "t",
    )
    assert cfg == Config(Path("o"), "lstm", ["neg", "pos"], 7, 0.5, True)


def test_booleans_have_a_no_form_and_defaults_stay():
    assert parse_config(Config, ["--out", "o", "--no-bidirectional"], "t") == Config(
        Path("o"), bidirectional=False
    )


@pytest.mark.parametrize(
    "argv", [[], ["--out", "o", "--cell", "rnn"], ["--out", "o", "--epochs", "x"]]
)
def test_a_missing_required_or_bad_value_is_refused(argv, capsys):
    with pytest.raises(SystemExit):
        parse_config(Config, argv, "t")
    assert "error:" in capsys.readouterr().err
