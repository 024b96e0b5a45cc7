"""A stateful task defined outside rnnserve, as a pip package would: the running mean of a
stream of numbers, kept per session by the server.

Its registration is this module's `TASK`, named by the `rnnserve.tasks` entry point of its
distribution's metadata; its serving class implements `service.tasks.base.StreamingTask`, and
that is all it takes to get sessions, in memory or in Redis.
"""

from contract.registry import TaskParts

TASK = TaskParts(name="runningmean", serving="tests.stateful_task.serving:RunningMeanTask")
