"""Cached calls into the core, keyed on content so that two users never share each other's data.

Streamlit's caches are global to the server. Every function here is keyed on a content hash
(of the uploaded bytes, of a table, of a model); arguments that start with an underscore are the
objects those hashes describe and are skipped by Streamlit's hasher on purpose.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import streamlit as st

from medimg_core.tables.cleaning import CleaningPlan, CleaningReport, clean
from medimg_core.tables.loading import LoadedTable, load_sample, load_table
from medimg_core.tables.profile import profile_columns
from medimg_core.tables.roles import RoleProposal, Roles, propose_roles

__all__ = ["as_json", "cleaned", "column_profile", "proposal", "sample_table", "uploaded_table"]


@st.cache_data(show_spinner="Reading the file…", max_entries=16)
def uploaded_table(data: bytes, name: str) -> LoadedTable:
    """Parse uploaded bytes (the bytes themselves are the cache key)."""
    return load_table(data, name=name)


@st.cache_data(show_spinner="Loading the built-in sample…", max_entries=4)
def sample_table(name: str = "wdbc") -> LoadedTable:
    """The built-in sample."""
    return load_sample(name)


@st.cache_data(max_entries=16)
def proposal(table_hash: str, _frame: pd.DataFrame) -> RoleProposal:
    """Proposed roles for the table whose content hash is ``table_hash``."""
    return propose_roles(_frame)


@st.cache_data(show_spinner="Cleaning…", max_entries=16)
def cleaned(
    table_hash: str, _frame: pd.DataFrame, roles_json: str, plan_json: str
) -> CleaningReport:
    """Clean the table whose content hash is ``table_hash`` with the given roles and plan."""
    roles = Roles.from_dict(json.loads(roles_json))
    plan = CleaningPlan.from_dict(json.loads(plan_json))
    return clean(_frame, roles, plan)


@st.cache_data(max_entries=16)
def column_profile(table_hash: str, _frame: pd.DataFrame, roles_json: str) -> pd.DataFrame:
    """The column profile of the table whose content hash is ``table_hash``, under given roles."""
    return profile_columns(_frame, Roles.from_dict(json.loads(roles_json)))


def as_json(value: Any) -> str:
    """Canonical JSON of a ``to_dict()``-able value, for cache keys."""
    return json.dumps(value.to_dict(), sort_keys=True, default=str)
