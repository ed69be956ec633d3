"""Run ``streamlit`` with the sign-in clock of the dashboard moved forward, for e2e tests.

``python tests/e2e/shifted_clock.py run app.py ...`` is ``streamlit run app.py ...`` whose
:mod:`medimg_core.ui.auth` reads the time as now plus the minutes written in the file named by
``MEDIMG_E2E_CLOCK_FILE`` (read at every call; empty or missing: no shift). A test writes "31"
there to be 31 minutes later for the idle-session check, without sleeping 31 minutes. Only the
sign-in module's clock moves: the audit trail and everything else keep the real time.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime, timedelta, tzinfo
from pathlib import Path

CLOCK_FILE = "MEDIMG_E2E_CLOCK_FILE"


def shift_minutes() -> float:
    """The shift written in the clock file, in minutes (0 when there is none)."""
    path = Path(os.environ[CLOCK_FILE])
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return 0.0
    return float(text) if text else 0.0


class ShiftedDatetime(datetime):
    """``datetime`` whose ``now`` is ahead by :func:`shift_minutes`."""

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> ShiftedDatetime:
        moment = datetime.now(tz) + timedelta(minutes=shift_minutes())
        return cls.fromtimestamp(moment.timestamp(), tz)


def main() -> None:
    from medimg_core.ui import auth

    # The module keeps the class it imported; both its clock and its isinstance checks use it.
    auth.datetime = ShiftedDatetime  # type: ignore[misc]
    from streamlit.web import cli

    sys.argv = ["streamlit", *sys.argv[1:]]
    cli.main()


if __name__ == "__main__":
    main()
