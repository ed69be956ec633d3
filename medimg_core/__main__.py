"""``python -m medimg_core``: the same command line as ``medimg``."""

from __future__ import annotations

from medimg_core.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
