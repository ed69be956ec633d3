"""The Data page's class widgets: names for numeric codes, the positive class chosen explicitly,
and numeric columns that look like patient numbers.

Numeric codes (0/1, 2/4) never get a positive class pre-selected unless a rule the user can read
decides it (the label column's name, the class names, a recognised MedMNIST set): the page asks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd
import streamlit as st

from medimg_core.tables.roles import (
    Roles,
    choose_positive_class,
    class_key,
    id_like_features,
    is_numeric_codes,
)
from medimg_core.ui import state
from medimg_core.ui.session import ImageContext

if TYPE_CHECKING:
    from medimg_core.imaging.npz import MedmnistDataset

__all__ = [
    "ClassChoice",
    "class_inputs",
    "id_like_inputs",
    "known_dataset",
    "positive_text",
    "with_classes",
]

_MAX_NAMED = 20


@dataclass(frozen=True)
class ClassChoice:
    """What the user chose for the label's classes.

    Attributes
    ----------
    positive : the positive class (None for multi-class, or not chosen yet).
    class_names : (code as text, name) pairs for :attr:`Roles.class_names`.
    needs_positive : a binary label whose positive class is not chosen yet: training must wait.
    """

    positive: Any
    class_names: tuple[tuple[str, str], ...]
    needs_positive: bool


def known_dataset(table_hash: str) -> MedmnistDataset | None:
    """The MedMNIST set the working table's images were recognised as (None otherwise)."""
    ctx: ImageContext | None = state.get(state.IMAGES)
    if ctx is None or ctx.table_hash != table_hash:
        return None
    return ctx.table.image_set.dataset


def _label_text(value: Any, names: dict[str, str]) -> str:
    key = class_key(value)
    return f"{key} — {names[key]}" if names.get(key) else key


def class_inputs(
    frame: pd.DataFrame,
    label: str,
    classes: Sequence[Any],
    *,
    confirmed: Roles | None,
    confirmed_positive: Any,
    known: MedmnistDataset | None,
) -> ClassChoice:
    """Class-name inputs for numeric codes and the positive-class choice, with explanations.

    Parameters
    ----------
    frame : the working table.
    label : the chosen label column.
    classes : its distinct values (two or more).
    confirmed : the roles confirmed earlier (their class names are the defaults).
    confirmed_positive : the positive class confirmed earlier.
    known : the recognised MedMNIST set, whose published names are the defaults.

    Returns
    -------
    ClassChoice
    """
    codes = is_numeric_codes(frame[label]) or (
        len(classes) > 2 and all(class_key(c).lstrip("-").isdigit() for c in classes)
    )
    names: dict[str, str] = {}
    if codes and len(classes) <= _MAX_NAMED:
        earlier = dict(confirmed.class_names) if confirmed and confirmed.label == label else {}
        published = dict(known.labels) if known is not None and label == "label" else {}
        if known is not None and published and not earlier:
            st.caption(
                f"Recognised as **{known.title}**: its published label names are filled in "
                "below. Change them if your file differs."
            )
        st.markdown("**Class names** (the label holds numeric codes; name them for every table)")
        cells = st.columns(min(len(classes), 4))
        for i, value in enumerate(classes):
            key = class_key(value)
            typed = cells[i % len(cells)].text_input(
                f"Name of code {key}",
                value=earlier.get(key, published.get(key, "")),
                key=f"class_name_{label}_{key}",
                placeholder="e.g. malignant",
            )
            if typed.strip():
                names[key] = typed.strip()
    pairs = tuple(names.items())
    if len(classes) != 2:
        return ClassChoice(None, pairs, needs_positive=False)
    rule = choose_positive_class(frame[label], label_name=label, class_names=pairs)
    if confirmed_positive in classes and confirmed is not None and confirmed.label == label:
        default: Any = confirmed_positive
    else:
        default = rule.value if rule is not None else None
    options = list(classes)
    positive = st.selectbox(
        "Positive class (the disease the model should find)",
        options,
        index=options.index(default) if default in options else None,
        format_func=lambda v: _label_text(v, names),
        placeholder="Choose the positive class",
        key="role_positive",
        help="The class the model flags (usually the disease). Sensitivity is measured on "
        "it, specificity on the other class.",
    )
    if positive is None:
        st.warning(
            f"The label holds the codes {' and '.join(class_key(c) for c in classes)}, which "
            "do not say which class is the disease (in BreastMNIST, 0 is malignant). Choose "
            "the positive class before training; naming the codes helps.",
            icon=":material/help:",
        )
    elif rule is not None and positive == rule.value and rule.from_codes:
        st.caption(f"Proposed because {rule.rule}. Change it if that is wrong.")
    return ClassChoice(positive, pairs, needs_positive=positive is None)


def id_like_inputs(frame: pd.DataFrame, roles: Roles) -> tuple[str, ...]:
    """Warn about numeric columns that look like patient numbers; the user may keep some.

    Returns
    -------
    tuple of str
        The columns the user keeps as features on purpose.
    """
    found = id_like_features(frame, dataclasses.replace(roles, keep_as_feature=()))
    if not found:
        return ()
    listed = ", ".join(f"**{c}** ({why})" for c, why in found.items())
    st.warning(
        f"{listed} look like patient or record numbers. A model could learn from the order in "
        "which patients were recorded, so training refuses them: choose the column as the "
        "Patient ID or exclude it above, or keep it below if it really is a measurement.",
        icon=":material/pin:",
    )
    kept = st.multiselect(
        "Keep as a feature (they are real measurements)",
        list(found),
        default=[c for c in roles.keep_as_feature if c in found],
        key="role_keep_feature",
    )
    return tuple(kept)


def with_classes(roles: Roles, choice: ClassChoice, keep_as_feature: Sequence[str]) -> Roles:
    """The roles with the class names and the columns kept on purpose."""
    return dataclasses.replace(
        roles, class_names=choice.class_names, keep_as_feature=tuple(keep_as_feature)
    )


def positive_text(roles: Roles, positive: Any) -> str:
    """The positive class as users know it: "malignant (code 0)", or the value alone."""
    name = roles.class_name(positive)
    return name if name == class_key(positive) else f"{name} (code {class_key(positive)})"
