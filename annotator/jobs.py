"""What every background job of the platform shares: its status vocabulary and which errors are
worth a retry.

Generation runs and items, training runs and exports all move through the same states, so their
status columns, API enums and retry policies come from here rather than from one app's models.
"""

from __future__ import annotations

from django.db import InterfaceError, OperationalError, models


class JobStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


# A job in one of these states may still change; the others are final.
UNFINISHED = (JobStatus.PENDING, JobStatus.RUNNING)

# Errors worth retrying: the database or a connection blinked. Everything else fails the job.
TRANSIENT_ERRORS = (OperationalError, InterfaceError, ConnectionError, TimeoutError)
