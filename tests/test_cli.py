"""The `rnnserve` command: subcommands, each task's flags, a clear word where torch is missing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cli import main
from tests.conftest import ROOT

NO_TORCH = """
import sys
sys.modules["torch"] = None  # the serving image: any `import torch` raises ImportError
from cli import main
main(sys.argv[1:])
"""


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--task=seq2seq", "--out", "never"],
        ["train", "--data", "x", "--out", "never"],
        ["export", "checkpoint.pt", "--name", "x"],
    ],
)
def test_train_and_export_without_torch_say_what_to_install(argv):
    result = subprocess.run(
        [sys.executable, "-c", NO_TORCH, *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().endswith("install rnnserve[train]"), result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("task_flag", [["--task=seq2seq"], ["--task", "seq2seq"]])
def test_train_hands_the_other_flags_to_the_tasks_trainer(task_flag, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["train", *task_flag, "-h"])
    assert exit.value.code == 0
    usage = capsys.readouterr().out
    assert usage.startswith("usage: rnnserve train --task seq2seq")
    assert "--max-output-chars" in usage and "--no-bidirectional" in usage


def test_an_unknown_task_is_refused_with_the_known_ones(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["train", "--task=juggling"])
    assert exit.value.code == 2
    error = capsys.readouterr().err
    assert "argument --task: invalid choice: 'juggling'" in error
    assert all(task in error.rsplit("choose from", 1)[1] for task in ("classify", "seq2seq"))


def test_serve_refuses_flags_it_does_not_know(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["serve", "--epochs", "3"])
    assert exit.value.code == 2 and "unrecognized arguments: --epochs 3" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("task", ["forecast", "seq2seq"])
def test_quantize_is_refused_alike_for_every_task_that_does_not_offer_it(
    task, tmp_path: Path, capsys
):
    from tests.forecast_helpers import tiny_forecast_checkpoint
    from tests.seq2seq_helpers import tiny_seq2seq_checkpoint

    checkpoint = tiny_forecast_checkpoint() if task == "forecast" else tiny_seq2seq_checkpoint()
    argv = ["export", str(checkpoint), "--name", "q", "--repository", str(tmp_path)]
    capsys.readouterr()  # the tiny checkpoint's training
    with pytest.raises(SystemExit) as exit:
        main([*argv, "--quantize", "int8"])
    assert exit.value.code == 1  # as for a user's module: one line, no usage
    assert capsys.readouterr().err == (
        f"rnnserve export: refused: --quantize int8 is not supported for {task} models\n"
    )
    assert not (tmp_path / "q").exists()  # refused before any work


@pytest.mark.slow
def test_a_checkpoint_missing_a_field_is_refused_in_one_line(tmp_path: Path, capsys):
    import torch

    from tests.forecast_helpers import tiny_forecast_checkpoint

    saved = torch.load(tiny_forecast_checkpoint(), weights_only=True)
    del saved["preprocessing"]["std"]
    broken = tmp_path / "checkpoint.pt"
    torch.save(saved, broken)
    capsys.readouterr()  # the tiny checkpoint's training
    with pytest.raises(SystemExit) as exit:
        main(["export", str(broken), "--name", "b", "--repository", str(tmp_path / "models")])
    assert exit.value.code == 1
    assert capsys.readouterr().err == (
        f"rnnserve export: refused: {broken}: not a ForecastCheckpoint "
        "(preprocessing.std: Field required; 1 problem(s) in all)\n"
    )


@pytest.mark.slow
def test_a_checkpoint_whose_facts_disagree_with_its_model_is_refused_in_one_line(
    tmp_path: Path, capsys
):
    import torch

    from tests.forecast_helpers import tiny_forecast_checkpoint

    saved = torch.load(tiny_forecast_checkpoint(), weights_only=True)
    saved["preprocessing"]["horizon"] += 1  # the model forecasts one step fewer
    broken = tmp_path / "checkpoint.pt"
    torch.save(saved, broken)
    capsys.readouterr()  # the tiny checkpoint's training
    with pytest.raises(SystemExit) as exit:
        main(["export", str(broken), "--name", "b", "--repository", str(tmp_path / "models")])
    assert exit.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith(f"rnnserve export: refused: {broken}: the checkpoint's series facts")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "models").exists()


def test_a_graph_made_elsewhere_is_exported_without_torch(tmp_path):
    """`rnnserve export --task tensor` in a serving install: onnx and onnxruntime suffice."""
    import onnx
    from onnx import TensorProto, helper

    from contract.manifest import Manifest

    doubled = helper.make_graph(
        [helper.make_node("Add", ["x", "x"], ["y"])],
        "double",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
    )
    model = helper.make_model(doubled, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "model.onnx"))
    argv = ["export", "--task", "tensor", "--onnx", str(tmp_path / "model.onnx")]
    argv += ["--name", "double", "--repository", str(tmp_path / "models")]
    result = subprocess.run(
        [sys.executable, "-c", NO_TORCH, *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    manifest = Manifest.read(tmp_path / "models" / "double" / "1")
    assert (manifest.task, manifest.origin, manifest.export.torch_version) == (
        "tensor",
        "onnx",
        None,
    )
    assert [(t.name, t.dtype, t.shape) for t in manifest.graphs["model"].inputs] == [
        ("x", "float32", ["batch", 3])
    ]


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--task", "forecast", "--module", "m.py:f", "--labels", "a,b"],
         "--task forecast does not take --labels"),
        (["--task", "seq2seq", "--module", "m.py:f", "--input-vocab", "in.txt"],
         "--task seq2seq takes --module, --input-vocab, --output-vocab"),
        (["--task", "tensor", "--onnx", "g.onnx", "--module", "m.py:f"],
         "--task tensor does not take --module"),
    ],
)  # fmt: skip
def test_each_task_reads_its_own_flags_from_its_export_command(argv, said, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["export", "--name", "x", *argv])
    assert exit.value.code == 2 and said in capsys.readouterr().err
