"""One family for every error cdc-sync raises on purpose, sorted by what should happen next.

Code that decides — quarantine a file, fail the task for a person, or let Airflow retry —
catches one of the three branches, never a list of concrete classes:

    CdcSyncError
    ├── BadInput        a landed object or record cannot be loaded as it is: quarantine it
    │                   (the message names it), load the rest, fail the task at the end
    ├── SetupError      configuration or target setup is wrong: fail without retrying
    └── TransientError  a passing failure (lock wait, lost connection): retry with backoff
"""

from __future__ import annotations


class CdcSyncError(Exception):
    """Root of every error cdc-sync raises on purpose; the message says what and where."""


class BadInput(CdcSyncError, ValueError):
    """A landed object or record cannot be loaded exactly as it is: quarantine it, go on."""


class SetupError(CdcSyncError):
    """The configuration or a target's setup is wrong: retrying cannot help, a person must act."""


class TransientError(CdcSyncError):
    """A failure that may pass by itself: the task is retried with backoff."""
