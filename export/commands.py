"""How `rnnserve export --task <name>` reads each task's flags and publishes from them.

A task's `export_command` in the registry names an `ExportCommand`: the flags it takes, which
of them it needs, and a function that publishes from what was given. The command line is built
from every registered task's command, so a plugin task is exported by the same command as ours.
Flags a task does not take are refused, not ignored. This module imports neither torch nor
onnx: the parser is built in a serving install too.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from export.driver import Options

if TYPE_CHECKING:
    from torch import nn

Publish = Callable[..., "Path | str"]  # (given flags by dest, name=, repository=, options=)


@dataclass(frozen=True)
class Flag:
    """One flag; `dest` is the keyword of the task's publish function it fills."""

    names: tuple[str, ...]
    dest: str
    help: str
    options: dict[str, Any] = field(default_factory=dict)  # argparse's: type, action, choices


@dataclass(frozen=True)
class ExportCommand:
    flags: tuple[Flag, ...]
    required: tuple[str, ...]  # dests the task cannot do without
    publish: Publish  # publish(given, name=..., repository=..., options=...)

    def usage(self, task: str) -> str:
        named = {f.dest: f.names[0] for f in self.flags}
        return f"--task {task} takes {', '.join(named[d] for d in self.required)}"


def labels(value: str) -> list[str]:
    return [label.strip() for label in value.split(",")]


MODULE = (
    Flag(
        ("--module",),
        "module",
        "FILE.py:CALLABLE or package.module:CALLABLE -> nn.Module "
        "(seq2seq: one with `encoder` and `decoder` submodules)",
    ),
    Flag(("--config",), "config", "JSON object: keyword arguments of CALLABLE", {"type": Path}),
    Flag(("--weights",), "weights", "the module's state_dict (torch.save)", {"type": Path}),
)
TEXT = (
    Flag(
        ("--tokenizer",),
        "tokenizer",
        "words, chars, or a Hugging Face tokenizer.json (default: words; seq2seq: chars)",
    ),
    Flag(
        ("--tokenizer-regex",),
        "tokenizer_regex",
        "instead of --tokenizer: tokens are re.findall(REGEX, text) (after --lowercase), "
        "looked up in the vocabulary; published as a tokenizer.json",
        {"metavar": "REGEX"},
    ),
    Flag(
        ("--tokenizer-examples",),
        "tokenizer_examples",
        'lines of {"text": ..., "ids": [...]} from your own tokenizer: export refuses a '
        "served tokenizer that gives any other ids",
        {"type": Path, "metavar": "FILE.jsonl"},
    ),
    Flag(("--lowercase",), "lowercase", "lowercase text before tokens", {"action": "store_true"}),
    Flag(("--pad-token",), "pad_token", "the vocabulary's padding token (default: <pad>)"),
    Flag(
        ("--unk-token",),
        "unk_token",
        "the vocabulary's unknown token (default: <unk>; "
        "seq2seq: may be absent, and unknown input is refused)",
    ),
)
CLASSIFY = (
    Flag(("--labels",), "labels", "class names in logit order, comma-separated", {"type": labels}),
    Flag(("--vocab",), "vocab", "vocabulary file, one token a line in id order", {"type": Path}),
    Flag(
        ("--outputs",),
        "outputs",
        "what forward returns (default: logits; probabilities are not softmaxed again)",
        {"choices": ["logits", "probabilities"]},
    ),
    Flag(("--max-tokens",), "max_tokens", "longest input served (default: 256)", {"type": int}),
    Flag(
        ("--eval-data",), "eval_data", "label<TAB>text lines: int8's accuracy check", {"type": Path}
    ),
)
SEQ2SEQ = (
    Flag(
        ("--input-vocab",),
        "input_vocab",
        "the input vocabulary, one token a line in id order",
        {"type": Path},
    ),
    Flag(("--output-vocab",), "output_vocab", "the output vocabulary, likewise", {"type": Path}),
    Flag(
        ("--output-tokenizer",),
        "output_tokenizer",
        "the output's tokenizer.json, if not --tokenizer's",
    ),
    Flag(("--bos-token",), "bos_token", "the decoder's first token (default: <s>)"),
    Flag(("--eos-token",), "eos_token", "the token ending a sequence (default: </s>)"),
    Flag(
        ("--append-eos",),
        "append_eos",
        "end every input with --eos-token",
        {"action": "store_true"},
    ),
    Flag(
        ("--max-input-tokens", "--max-input-chars"),
        "max_input_chars",
        "longest input, in characters or tokens (default: 64)",
        {"type": int},
    ),
    Flag(
        ("--max-output-tokens", "--max-output-chars"),
        "max_output_chars",
        "longest output, in characters or tokens (default: 64)",
        {"type": int},
    ),
)
FORECAST = (
    Flag(("--mean",), "mean", "scale: (x - mean) / std (default: 0)", {"type": float}),
    Flag(("--std",), "std", "... before the step (default: 1)", {"type": float}),
    Flag(("--max-values",), "max_values", "most values per request (default: 1024)", {"type": int}),
)
GRAPH = (Flag(("--onnx",), "graph", "an ONNX graph made elsewhere", {"type": Path}),)


def build_module(given: dict[str, Any]) -> nn.Module:
    """The user's module from --module, --config and --weights (taken out of `given`)."""
    from export.user_module import build_module as build

    return build(given.pop("module"), given.pop("config", None), given.pop("weights", None))


def publish_classifier(given: dict[str, Any], **common: Any) -> Path | str:
    from export import api

    return api.publish_classifier(build_module(given), **given, **common)


def publish_seq2seq(given: dict[str, Any], **common: Any) -> Path | str:
    from torch import nn

    from export import api
    from export.driver import ContractError

    spec, module = given["module"], build_module(given)
    if not all(isinstance(getattr(module, n, None), nn.Module) for n in ("encoder", "decoder")):
        raise ContractError(
            f"expected {spec} to return a module with `encoder` and `decoder` submodules, "
            f"got {type(module).__name__}"
        )
    return api.publish_seq2seq(module.encoder, module.decoder, **given, **common)


def publish_forecaster(given: dict[str, Any], **common: Any) -> Path | str:
    from export import api

    return api.publish_forecaster(build_module(given), **given, **common)


def publish_onnx(given: dict[str, Any], *, options: Options, **common: Any) -> Path | str:
    from export import api

    card = {"title": options.title, "description": options.description}
    return api.publish_onnx(given.pop("graph"), **card, examples=options.examples, **common)


CLASSIFY_COMMAND = ExportCommand(
    (*MODULE, *CLASSIFY, *TEXT), ("module", "labels"), publish_classifier
)
SEQ2SEQ_COMMAND = ExportCommand(
    (*MODULE, *SEQ2SEQ, *TEXT), ("module", "input_vocab", "output_vocab"), publish_seq2seq
)
FORECAST_COMMAND = ExportCommand((*MODULE, *FORECAST), ("module",), publish_forecaster)
TENSOR_COMMAND = ExportCommand(GRAPH, ("graph",), publish_onnx)


def add_flags(parser: argparse.ArgumentParser, commands: dict[str, ExportCommand]) -> None:
    """Every task's flags, each once (tasks share some): absent from the namespace unless
    given, so a task's publish function keeps its own defaults."""
    group = parser.add_argument_group("your own model (instead of a checkpoint)")
    group.add_argument("--task", choices=sorted(commands), help="what it does")
    takers: dict[str, list[str]] = {}
    flags: dict[str, Flag] = {}
    for task, command in sorted(commands.items()):
        for flag in command.flags:
            flags.setdefault(flag.dest, flag)
            takers.setdefault(flag.dest, []).append(task)
    for dest, flag in flags.items():
        group.add_argument(
            *flag.names,
            dest=dest,
            help=f"{flag.help} [{', '.join(takers[dest])}]",
            default=argparse.SUPPRESS,
            **flag.options,
        )


def given_flags(args: argparse.Namespace, commands: dict[str, ExportCommand]) -> dict[str, Any]:
    """The task flags given on the command line, by dest."""
    dests = {f.dest for command in commands.values() for f in command.flags}
    return {d: getattr(args, d) for d in dests if hasattr(args, d)}


def check_given(task: str, commands: dict[str, ExportCommand], given: dict[str, Any]) -> str | None:
    """What is wrong with the flags given for this task, in one line; None if nothing."""
    command = commands[task]
    if any(d not in given for d in command.required):
        return command.usage(task)
    names = {f.dest: f.names[0] for c in commands.values() for f in c.flags}
    foreign = sorted(names[d] for d in given if d not in {f.dest for f in command.flags})
    if foreign:
        return f"--task {task} does not take {', '.join(foreign)}"
    return None
