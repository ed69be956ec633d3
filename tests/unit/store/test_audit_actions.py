"""The audit trail's actions: one light list shared by the trail and the command line's parser."""

from __future__ import annotations

import subprocess
import sys

from medimg_core import cli
from medimg_core.store import audit
from medimg_core.store.audit_actions import ACTIONS


def test_the_trail_and_the_parser_use_the_same_actions() -> None:
    assert audit.ACTIONS is ACTIONS and cli.ACTIONS is ACTIONS
    assert len(set(ACTIONS)) == len(ACTIONS)
    assert all(action == action.strip().lower() and action for action in ACTIONS)


def test_the_list_loads_no_database_code() -> None:
    code = (
        "import sys; import medimg_core.store.audit_actions; "
        "print(sorted(m for m in ('sqlalchemy', 'pandas', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
