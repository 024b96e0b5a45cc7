"""Serving pipelines (torch-free): the task registry names the class for a manifest's task."""

from __future__ import annotations

from contract import registry
from service.tasks.base import ServingTask, TaskContext


def build_task(ctx: TaskContext) -> ServingTask:
    """The serving pipeline of the version's task; imports only that task's serving module."""
    return registry.load(registry.get(ctx.manifest.task).serving)(ctx)
