"""A task defined outside rnnserve, as a pip package would: it counts the unknown words of a text.

Its registration is this module's `TASK` (torch-free: the server imports it to learn of the
task), named by the `rnnserve.tasks` entry point of its distribution's metadata.
"""

from contract.registry import TaskParts

TASK = TaskParts(
    name="wordcount",
    serving="tests.plugin_task.serving:WordCountTask",
    exporter="tests.plugin_task.export:WordCountExporter",
    export_command="tests.plugin_task.command:COMMAND",
)
