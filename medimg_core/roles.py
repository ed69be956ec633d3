"""Column roles: which column is the label, the patient ID, the quality flag, the site, and which
columns identify a person and must never become model features."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["RoleProposal", "Roles"]


@dataclass(frozen=True)
class Roles:
    """The roles the user confirmed. Every other column is a candidate feature.

    ``exclude`` holds identifying columns (names, dates of birth, phone numbers, addresses,
    free text) and anything else the user chose to leave out; they never reach a model.
    """

    label: str | None = None
    id: str | None = None
    quality: str | None = None
    site: str | None = None
    exclude: tuple[str, ...] = ()

    def non_feature_columns(self) -> tuple[str, ...]:
        """Columns that are never model features."""
        named = [c for c in (self.label, self.id, self.quality, self.site) if c]
        return tuple(dict.fromkeys([*named, *self.exclude]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "id": self.id,
            "quality": self.quality,
            "site": self.site,
            "exclude": list(self.exclude),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Roles:
        return cls(
            label=d.get("label"),
            id=d.get("id"),
            quality=d.get("quality"),
            site=d.get("site"),
            exclude=tuple(d.get("exclude") or ()),
        )


@dataclass(frozen=True)
class RoleProposal:
    """What medimg proposes, with reasons, for the user to confirm.

    ``identifying`` maps a column to the reason it looks identifying ("person names",
    "dates of birth", "phone numbers", "addresses", "free text", "name hint").
    """

    label_candidates: tuple[str, ...]
    id: str | None
    quality: str | None
    site: str | None
    identifying: dict[str, str] = field(default_factory=dict)
    positive_class: Any = None

    def to_roles(self) -> Roles:
        """The proposal taken as it stands (first label candidate)."""
        return Roles(
            label=self.label_candidates[0] if self.label_candidates else None,
            id=self.id,
            quality=self.quality,
            site=self.site,
            exclude=tuple(self.identifying),
        )
