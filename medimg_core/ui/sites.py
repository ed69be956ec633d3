"""The Train page's leave-one-site-out option, shown only when the roles name a site column."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from medimg_core.tables.roles import Roles

__all__ = ["LOSO_KEY", "site_validation_choice"]

LOSO_KEY = "train_leave_one_site_out"
"""Widget key of the Train page's leave-one-site-out checkbox."""


def site_validation_choice(data: pd.DataFrame, roles: Roles, *, available: bool = True) -> bool:
    """Offer leave-one-site-out validation when the data have a site column with 2+ sites.

    Parameters
    ----------
    data : the cleaned training table.
    roles : the confirmed roles (``roles.site`` names the site column).
    available : False where the option cannot run (tables trained on the compute cluster);
        the user is told why.

    Returns
    -------
    bool
        True when the user asked for it (and it can run).
    """
    site = roles.site
    if not site or site not in data.columns:
        return False
    n_sites = int(data[site].nunique(dropna=True))
    if n_sites < 2:
        st.caption(
            f":material/domain: One site in **{site}**: leave-one-site-out validation needs at "
            "least two."
        )
        return False
    if not available:
        st.caption(
            ":material/domain: Leave-one-site-out validation is not offered for tables trained "
            "on the compute cluster; use `medimg train --validation leave-one-site-out`."
        )
        return False
    chosen = st.checkbox(
        f"Also validate leave-one-site-out ({n_sites} sites in {site})",
        value=False,
        key=LOSO_KEY,
        help="Each site in turn is held out: a model is developed on the other sites exactly "
        "as in training (threshold chosen on their cross-validation) and scored once on the "
        "held-out site. It shows how the model transfers to a new hospital or scanner. It "
        "trains one extra model per site, so it takes longer.",
    )
    if chosen:
        st.caption(
            "The saved, deployed model is still the one trained with the settings above; the "
            "per-site results are extra evidence, shown on Evaluate and kept in the model card."
        )
    return bool(chosen)
