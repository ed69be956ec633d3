"""The audit trail's actions, in a module of their own: the command line's parser lists them
without loading the trail's database code (``medimg --help`` stays fast)."""

from __future__ import annotations

__all__ = ["ACTIONS"]

ACTIONS: tuple[str, ...] = (
    "sign-in",
    "sign-in failed",
    "sign-out",
    "upload",
    "clean",
    "train",
    "evaluate",
    "explain case",
    "export",
    "predict",
    "open run",
    "delete",
    "reader feedback",
    "report",
    "run context",
    "user change",
    "role change",
    "project change",
    "settings change",
    "key rotation",
)
"""Everything the audit trail records; any other action is refused."""
