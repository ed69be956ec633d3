"""How pages show errors: medimg's own as one ``st.error``; anything else as a generic message.

An unexpected exception is a bug. It is logged with its type and code locations only: exception
messages can quote data values (pandas does), so they are never logged or shown. Set
``MEDIMG_RAISE=1`` (tests do) to let such exceptions propagate instead.
"""

from __future__ import annotations

import logging
import os
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from medimg_core.errors import MedimgError

__all__ = ["UNEXPECTED_MESSAGE", "page_errors"]

log = logging.getLogger("medimg.ui")

UNEXPECTED_MESSAGE = (
    "medimg hit an unexpected problem and stopped this step (reference {ref}). "
    "Your data is unchanged. Try again; if it happens again, report the reference to your "
    "administrator."
)


def _frames(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    return " <- ".join(f"{os.path.basename(f.filename)}:{f.lineno}:{f.name}" for f in reversed(tb))


@contextmanager
def page_errors() -> Iterator[None]:
    """Run a page: show ``MedimgError`` messages, hide and log everything else."""
    try:
        yield
    except MedimgError as exc:
        st.error(str(exc), icon=":material/error:")
    except Exception as exc:
        if os.environ.get("MEDIMG_RAISE"):
            raise
        ref = uuid.uuid4().hex[:8]
        log.error("unexpected %s (ref %s) at %s", type(exc).__name__, ref, _frames(exc))
        st.error(UNEXPECTED_MESSAGE.format(ref=ref), icon=":material/error:")
