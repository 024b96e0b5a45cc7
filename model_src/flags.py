"""Command-line flags from a config dataclass: one `--flag-name` per field, typed by its hint.

A field without a default is a required flag; `bool` fields get `--x/--no-x`; `list[str]`
fields read comma-separated values; `metadata={"choices": ..., "help": ...}` adds the rest.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

Config = TypeVar("Config")


def _comma_list(text: str) -> list[str]:
    return [part for part in text.split(",") if part]


def _converter(hint: Any) -> Any:
    """The argparse `type` for a field's type hint (Optional[X] reads as X)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        (hint,) = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is list:
        return _comma_list
    if hint in (int, float, str, Path):
        return hint
    raise TypeError(f"no flag for a field of type {hint!r}")


def build_parser(config: type, prog: str, description: str = "") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    hints = typing.get_type_hints(config)
    for f in dataclasses.fields(config):
        flag = "--" + f.name.replace("_", "-")
        options: dict[str, Any] = {"help": f.metadata.get("help")}
        if "choices" in f.metadata:
            options["choices"] = f.metadata["choices"]
        if f.default is dataclasses.MISSING:
            options["required"] = True
        else:
            options["default"] = f.default
        if hints[f.name] is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **options)
        else:
            parser.add_argument(flag, type=_converter(hints[f.name]), **options)
    return parser


def parse_config(
    config: type[Config], argv: list[str] | None, prog: str, description: str = ""
) -> Config:
    """The config that the command line asks for."""
    args = build_parser(config, prog, description).parse_args(argv)
    return config(**vars(args))
