"""Sign-in time with local accounts: argon2id at the library's defaults (issue 9).

``Accounts.authenticate`` on a SQLite registry with argon2-cffi's default parameters (RFC 9106
low-memory profile: time cost 3, 64 MiB, 4 lanes), for the three answers a sign-in can get:
the right password, a wrong one, and a user who does not exist (which hashes a dummy password so
that it takes as long as a real account). Median and range over ``--repeat`` attempts each; the
lock-out is set high enough not to trigger.

Run: ``python benchmarks/bench_accounts.py [--repeat N]``. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _common import load_line
from argon2 import PasswordHasher

from medimg_core.errors import AuthenticationError
from medimg_core.store.accounts import Accounts, AccountSettings

PASSWORD = "correct horse battery staple"


def timed(attempt: Callable[[], object], n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        with contextlib.suppress(AuthenticationError):
            attempt()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    n = parser.parse_args().repeat
    hasher = PasswordHasher()
    print(
        f"argon2id defaults: time_cost={hasher.time_cost}, memory_cost={hasher.memory_cost} KiB, "
        f"parallelism={hasher.parallelism}"
    )
    settings = AccountSettings(lockout_attempts=10 * n + 10)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp)}/registry.db"
        with Accounts(url=url, home=tmp, hasher=hasher, settings=settings) as accounts:
            accounts.add_user("alice", PASSWORD, "viewer")
            accounts.authenticate("alice", PASSWORD)  # warm the engine and the dummy hash
            cases = {
                "right password": lambda: accounts.authenticate("alice", PASSWORD),
                "wrong password": lambda: accounts.authenticate("alice", PASSWORD + "!"),
                "unknown user": lambda: accounts.authenticate("mallory", PASSWORD),
            }
            for label, attempt in cases.items():
                times = timed(attempt, n)
                print(
                    f"{label:>15}: median {statistics.median(times) * 1000:.0f} ms "
                    f"(min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f}; n={n})"
                )
    print(load_line())


if __name__ == "__main__":
    main()
