"""`rnnserve export` / `python -m export`: checkpoint, a user's module or an ONNX graph ->
models/<name>/<version>/.

One command for every task: a checkpoint's `format` names the task in the registry, whose
exporter supplies the graphs; `--task classify --module FILE.py:CALLABLE` exports a user's
module and `--task tensor --onnx model.onnx` any ONNX graph (through export.api); the driver
verifies them and `publish` puts them in place.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from contract import registry
from contract.manifest import MODEL_NAME
from export.driver import (
    QUANTIZATIONS,
    ContractError,
    LimitError,
    NotExportable,
    Options,
    check_options,
    write_version,
)
from export.publish import publish


def exportable_tasks() -> list[str]:
    """Every task in the registry (plugins' included) that can export a model of its own."""
    return sorted(n for n, parts in registry.tasks().items() if parts.module_exporter or (
        parts.exporter and not parts.checkpoint_format))  # fmt: skip


def build_parser(prog: str = "rnnserve export") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__)
    p.add_argument(
        "checkpoint", type=Path, nargs="?", help="checkpoint.pt written by rnnserve train"
    )
    p.add_argument("--name", required=True, help=f"model name, {MODEL_NAME.pattern}")
    p.add_argument(
        "--repository", default="models", help="a folder, or object storage: s3://bucket/prefix"
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=Options.tolerance,
        help="largest PyTorch-vs-onnxruntime difference accepted",
    )
    card = p.add_argument_group("what the page shows about the model")
    card.add_argument("--title", default="", help="what the model is, in a few words")
    card.add_argument("--description", default="", help="a sentence or two about it")
    card.add_argument(
        "--example",
        action="append",
        default=[],
        dest="examples",
        metavar="INPUT",
        help="an input to try, as a person types it (repeatable)",
    )
    p.add_argument("--quantize", choices=QUANTIZATIONS, help="publish dynamically quantised graphs")
    p.add_argument(
        "--max-accuracy-drop",
        type=float,
        default=Options.max_accuracy_drop,
        help="refuse a quantised graph that loses more held-out accuracy",
    )
    own = p.add_argument_group("your own model (instead of a checkpoint)")
    own.add_argument("--task", choices=exportable_tasks(), help="what it does")
    own.add_argument(
        "--module",
        help="FILE.py:CALLABLE or package.module:CALLABLE -> nn.Module (seq2seq: one with "
        "`encoder` and `decoder` submodules)",
    )
    own.add_argument("--config", type=Path, help="JSON object: keyword arguments of CALLABLE")
    own.add_argument("--weights", type=Path, help="the module's state_dict (torch.save)")
    own.add_argument("--vocab", type=Path, help="vocabulary file, one token a line in id order")
    own.add_argument("--labels", help="class names in logit order, comma-separated")
    own.add_argument(
        "--outputs",
        choices=["logits", "probabilities"],
        default="logits",
        help="classify: what forward returns (probabilities are not softmaxed again)",
    )
    own.add_argument(
        "--tokenizer",
        help="words, chars, or a Hugging Face tokenizer.json (default: words; seq2seq: chars)",
    )
    own.add_argument(
        "--tokenizer-regex",
        metavar="REGEX",
        help="instead of --tokenizer: tokens are re.findall(REGEX, text) (after --lowercase), "
        "looked up in the vocabulary; published as a tokenizer.json",
    )
    own.add_argument(
        "--tokenizer-examples",
        type=Path,
        metavar="FILE.jsonl",
        help='lines of {"text": ..., "ids": [...]} from your own tokenizer: export refuses a '
        "served tokenizer that gives any other ids",
    )
    own.add_argument("--lowercase", action="store_true", help="lowercase text before tokens")
    own.add_argument("--pad-token", default="<pad>", help="the vocabulary's padding token")
    own.add_argument(
        "--unk-token",
        default="<unk>",
        help="the vocabulary's unknown token (seq2seq: may be absent; unknown input is refused)",
    )
    own.add_argument("--bos-token", default="<s>", help="seq2seq: the decoder's first token")
    own.add_argument("--eos-token", default="</s>", help="seq2seq: the token ending a sequence")
    own.add_argument(
        "--append-eos", action="store_true", help="seq2seq: end every input with --eos-token"
    )
    own.add_argument("--max-tokens", type=int, default=256, help="longest input served")
    own.add_argument("--eval-data", type=Path, help="label<TAB>text lines: int8's accuracy check")
    own.add_argument("--onnx", type=Path, help="an ONNX graph made elsewhere (--task tensor)")
    own.add_argument("--input-vocab", type=Path, help="seq2seq: the input vocabulary, one token "
                     "a line in id order")  # fmt: skip
    own.add_argument("--output-vocab", type=Path, help="seq2seq: the output vocabulary, likewise")
    own.add_argument(
        "--output-tokenizer", help="seq2seq: the output's tokenizer.json, if not --tokenizer's"
    )
    own.add_argument("--max-input-tokens", "--max-input-chars", dest="max_input", type=int,
                     default=64, help="seq2seq: longest input (characters or tokens)")  # fmt: skip
    own.add_argument("--max-output-tokens", "--max-output-chars", dest="max_output", type=int,
                     default=64, help="seq2seq: longest output (characters or tokens)")  # fmt: skip
    own.add_argument("--mean", type=float, default=0.0, help="forecast: values are scaled as")
    own.add_argument("--std", type=float, default=1.0, help="(x - mean) / std before the step")
    own.add_argument("--max-values", type=int, default=1024, help="forecast: most per request")
    return p


def export_own(
    p: argparse.ArgumentParser, args: argparse.Namespace, options: Options
) -> Path | str:
    """A user's module or graph, through export.api; a broken contract is one line, exit 1.
    torch is imported only for a module: a graph (`--task tensor`) needs onnx alone."""
    import onnx

    from export import api
    from export.common import ParityError

    if args.checkpoint is not None:
        p.error("give a checkpoint, or --task with --module or --onnx, not both")
    try:
        if args.task == "tensor":
            if args.onnx is None or args.module is not None:
                p.error("--task tensor takes --onnx model.onnx (and no --module)")
            return api.publish_onnx(
                args.onnx, name=args.name, repository=args.repository, title=options.title,
                description=options.description, examples=options.examples,
            )  # fmt: skip
        from torch import nn

        from export.user_module import build_module

        if args.task == "forecast":
            if args.module is None:
                p.error("--task forecast takes --module (a step module with initial_state)")
            return api.publish_forecaster(
                build_module(args.module, args.config, args.weights),
                name=args.name,
                repository=args.repository,
                mean=args.mean,
                std=args.std,
                max_values=args.max_values,
                options=options,
            )
        if args.task == "seq2seq":
            if args.module is None or args.input_vocab is None or args.output_vocab is None:
                p.error("--task seq2seq takes --module, --input-vocab and --output-vocab")
            module = build_module(args.module, args.config, args.weights)
            if not all(
                isinstance(getattr(module, n, None), nn.Module) for n in ("encoder", "decoder")
            ):
                raise ContractError(
                    f"expected {args.module} to return a module with `encoder` and `decoder` "
                    f"submodules, got {type(module).__name__}"
                )
            return api.publish_seq2seq(
                module.encoder,
                module.decoder,
                input_vocab=args.input_vocab,
                output_vocab=args.output_vocab,
                tokenizer=args.tokenizer or "chars",
                output_tokenizer=args.output_tokenizer,
                tokenizer_regex=args.tokenizer_regex,
                tokenizer_examples=args.tokenizer_examples,
                lowercase=args.lowercase,
                pad_token=args.pad_token,
                unk_token=args.unk_token,
                bos_token=args.bos_token,
                eos_token=args.eos_token,
                append_eos=args.append_eos,
                name=args.name,
                repository=args.repository,
                max_input_chars=args.max_input,
                max_output_chars=args.max_output,
                options=options,
            )
        if args.task != "classify":  # a plugin's task: its flags are not this command's
            p.error(
                f"--task {args.task}: this command exports the built-in tasks; publish a "
                f"{args.task} model with its package's exporter (registry: "
                f"{registry.get(args.task).module_exporter or registry.get(args.task).exporter})"
            )
        if args.module is None or args.labels is None or args.onnx is not None:
            p.error("--task classify takes --module, --labels and --vocab or --tokenizer FILE")
        module = build_module(args.module, args.config, args.weights)
        return api.publish_classifier(
            module,
            labels=[label.strip() for label in args.labels.split(",")],
            name=args.name,
            vocab=args.vocab,
            tokenizer=args.tokenizer or "words",
            tokenizer_regex=args.tokenizer_regex,
            tokenizer_examples=args.tokenizer_examples,
            repository=args.repository,
            lowercase=args.lowercase,
            pad_token=args.pad_token,
            unk_token=args.unk_token,
            max_tokens=args.max_tokens,
            eval_data=args.eval_data,
            outputs=args.outputs,
            options=options,
        )
    except (ContractError, ParityError, NotExportable, LimitError, json.JSONDecodeError) as error:
        p.exit(1, f"{p.prog}: refused: {error}\n")
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        p.exit(1, f"{p.prog}: refused: the graph fails onnx.checker: {str(error).strip()}\n")


def main(argv: list[str] | None = None) -> Path | str:
    p = build_parser()
    args = p.parse_args(argv)
    if not MODEL_NAME.match(args.name):
        p.error(f"--name must match {MODEL_NAME.pattern}")
    options = Options(
        tolerance=args.tolerance,
        description=args.description.strip(),
        title=args.title.strip(),
        examples=tuple(args.examples),
        quantize=args.quantize,
        max_accuracy_drop=args.max_accuracy_drop,
    )
    if args.task is not None:
        folder = export_own(p, args, options)
        print(f"published {folder}")
        return folder
    if args.checkpoint is None:
        p.error("give a checkpoint written by rnnserve train, or --task with --module or --onnx")
    import torch

    kind = torch.load(args.checkpoint, map_location="cpu", weights_only=True).get("format")
    try:
        parts = registry.for_checkpoint(kind)
    except ValueError as error:
        p.error(f"{args.checkpoint}: {error}")
    if parts.exporter is None:
        p.error(f"task {parts.name!r} has no exporter")
    exporter_class = registry.load(parts.exporter)
    try:
        check_options(parts.name, exporter_class, options)
    except NotExportable as error:  # one line and exit 1, as for a user's module
        p.exit(1, f"{p.prog}: refused: {error}\n")
    exporter = getattr(exporter_class, "from_checkpoint", exporter_class)(args.checkpoint)  # TODO
    folder = publish(
        args.repository,
        args.name,
        lambda folder, version: write_version(
            parts.name, exporter, folder, args.name, version, options
        ),
    )
    print(f"published {folder}")
    return folder


if __name__ == "__main__":
    main()
