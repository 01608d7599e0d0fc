"""Scheduled jobs: triggers (``every``, ``cron``, ``at``), the :class:`Job` users hold, and each bus's scheduler."""

from .job import JOB_ADDRESS_PREFIX, Job
from .scheduler import JobHost, JobScheduler
from .triggers import At, Cron, Every, Trigger, at, cron, every

__all__ = [
    "JOB_ADDRESS_PREFIX",
    "At",
    "Cron",
    "Every",
    "Job",
    "JobHost",
    "JobScheduler",
    "Trigger",
    "at",
    "cron",
    "every",
]
