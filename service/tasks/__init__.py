"""Task pipelines (torch-free): one module per task, chosen by the manifest's `task`."""

from __future__ import annotations

from service.tasks.base import Task, TaskContext


def build_task(ctx: TaskContext) -> Task:
    from service.tasks.classify import ClassifyTask
    from service.tasks.forecast import ForecastTask
    from service.tasks.seq2seq import Seq2SeqTask

    tasks: dict[str, type] = {
        "classify": ClassifyTask,
        "seq2seq": Seq2SeqTask,
        "forecast": ForecastTask,
    }
    kind = ctx.manifest.task
    if kind not in tasks:
        raise ValueError(f"task {kind!r} is not served by this version of rnnserve")
    return tasks[kind](ctx)
