"""A user's nn.Module: built from `FILE.py:CALLABLE` or `package.module:CALLABLE`, its weights
loaded, and every breach of a task's forward contract told as "expected ..., got ..."."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from export.driver import ContractError


def load_callable(spec: str) -> Callable[..., Any]:
    """`path/to/file.py:build` or `package.module:build` -> the callable it names."""
    target, sep, attribute = spec.rpartition(":")
    if not sep or not target or not attribute:
        raise ContractError(
            f"--module expects FILE.py:CALLABLE or package.module:CALLABLE, got {spec!r}"
        )
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise ContractError(f"--module: {path} is not a file")
        name = f"rnnserve_user_{path.stem}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module  # dataclasses and pickling look modules up by name
        sys.path.insert(0, str(path.parent.resolve()))  # its sibling imports
        try:
            module_spec.loader.exec_module(module)
        finally:
            sys.path.remove(str(path.parent.resolve()))
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as error:
            raise ContractError(f"--module: cannot import {target!r}: {error}") from None
    if not hasattr(module, attribute):
        raise ContractError(f"--module: {target} has no {attribute!r}")
    return getattr(module, attribute)


def build_module(spec: str, config: Path | None, weights: Path | None) -> nn.Module:
    """Call the user's builder with the config's keyword arguments, then load the state_dict."""
    kwargs = json.loads(config.read_text()) if config is not None else {}
    if not isinstance(kwargs, dict):
        raise ContractError(
            f"--config must hold a JSON object of keyword arguments, got {kwargs!r}"
        )
    try:
        module = load_callable(spec)(**kwargs)
    except TypeError as error:
        raise ContractError(f"--module {spec} with --config's arguments: {error}") from None
    if not isinstance(module, nn.Module):
        raise ContractError(
            f"expected {spec} to return a torch.nn.Module, got {type(module).__name__}"
        )
    if weights is not None:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise ContractError(
                f"expected --weights to hold a state_dict, got {type(state).__name__}"
            )
        try:
            module.load_state_dict(state)
        except RuntimeError as error:
            raise ContractError(f"--weights do not fit the module: {error}") from None
    return module.eval()


def call_forward(
    module: nn.Module, args: tuple[torch.Tensor, ...], signature: str, owner: str = ""
) -> Any:
    """The module's forward on an example; a failure is told with the contract's signature
    (of `owner`'s forward, e.g. "the decoder's ", where the module is one of several)."""
    try:
        with torch.no_grad():
            return module(*args)
    except TypeError as error:
        raise ContractError(
            f"expected {owner}forward{signature}; calling it so raised: {error}"
        ) from None
    except Exception as error:
        shapes = ", ".join(f"{list(a.shape)} {str(a.dtype).removeprefix('torch.')}" for a in args)
        raise ContractError(
            f"{owner}forward{signature} failed on inputs of shapes {shapes}: "
            f"{type(error).__name__}: {error}"
        ) from None


def describe(value: Any) -> str:
    """What came back from a forward, in the words of the contract's messages."""
    if isinstance(value, torch.Tensor):
        return f"a {str(value.dtype).removeprefix('torch.')} tensor of shape {list(value.shape)}"
    if isinstance(value, tuple | list):
        return f"a {type(value).__name__} of {len(value)}: " + "; ".join(map(describe, value))
    return f"a {type(value).__name__}"


def export_onnx(module: nn.Module, export: Callable[[], None]) -> None:
    """Run an export; the exporter's failure becomes one line, not its stack trace."""
    try:
        with warnings.catch_warnings(), quiet_output():
            warnings.simplefilter("ignore")
            export()
    except Exception as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ContractError(
            f"{type(module).__name__} could not be exported to ONNX: "
            f"{type(error).__name__}: {first}"
        ) from None


@contextmanager
def quiet_output() -> Iterator[None]:
    """Silence file descriptors 1 and 2: the exporter prints its whole IR graph (from C++) when
    it fails, and the user is told one line instead."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
