"""Client profiles: how an EHR applies what the service sends (hooks/clients/*.json).

CDS clients differ in what they accept, and the service must fit the one it serves:
- ``selectionBehavior``: ``per-card`` sends ``at-most-one`` where a card's suggestions exclude
  each other and ``any`` where they can all be taken together (CDS Hooks 2.0); ``any`` is for a
  client that documents no other value (a client that does not understand a value must treat
  the card as an error): every card then carries only suggestions that can all be taken together.
- ``replacementStyle``: a replacement as an ``update`` of the draft in place, or a ``delete`` of
  the draft and a ``create`` of the new order.
- ``pama``: the Argonaut PAMA rating of CPT-coded orders, where it goes: as ``update`` system
  actions at the hooks named in ``systemActionsAt``, in the response's ``systemActions`` and/or
  ``extension.systemActions`` (the CDS Hooks sandbox reads only the latter), and on every update
  of a CPT-coded order at the hooks named in ``onUpdatesAt`` (the sandbox's PAMA screen reads a
  rating from every update it applies, at order-select and order-sign). All empty: off.

A site picks a profile in its ``client.json`` (``{"profile": "epic"}``); other keys there
override the profile's. Without one the profile is ``generic``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULT_PROFILE = "generic"
Hook = Literal["order-select", "order-sign"]
SelectionStyle = Literal["per-card", "any"]
ReplacementStyle = Literal["update", "delete-create"]
RatingPlace = Literal["systemActions", "extension.systemActions"]


class ClientProfileError(ValueError):
    """A client profile or a site's choice of one is malformed."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PamaPlacement(_Strict):
    """Where PAMA ratings go; all empty is off (the AUC program is rescinded: README)."""

    systemActionsAt: tuple[Hook, ...] = ()
    where: tuple[RatingPlace, ...] = ()
    onUpdatesAt: tuple[Hook, ...] = ()

    @model_validator(mode="after")
    def _placed_somewhere(self) -> PamaPlacement:
        if bool(self.systemActionsAt) != bool(self.where):
            raise ValueError("pama: systemActionsAt and where go together (hooks and places)")
        return self

    @property
    def on(self) -> bool:
        return bool(self.systemActionsAt or self.onUpdatesAt)


class ClientProfile(_Strict):
    """What one kind of client applies, with the public documents it was taken from."""

    description: str = Field(min_length=1)
    sources: tuple[str, ...] = ()
    selectionBehavior: SelectionStyle
    replacementStyle: ReplacementStyle
    pama: PamaPlacement


class ClientChoice(_Strict):
    """A site's ``client.json``: a profile, and any of its keys overridden."""

    description: str | None = None
    profile: str = DEFAULT_PROFILE
    selectionBehavior: SelectionStyle | None = None
    replacementStyle: ReplacementStyle | None = None
    pama: PamaPlacement | None = None

    def overrides(self) -> dict[str, object]:
        return {
            key: getattr(self, key)
            for key in ("selectionBehavior", "replacementStyle", "pama")
            if getattr(self, key) is not None
        }


#: The site chose nothing: the generic profile as it is.
NO_CHOICE = ClientChoice()


def resolve(profiles: Mapping[str, ClientProfile], choice: ClientChoice) -> ClientProfile:
    """The profile a site chose, with its overrides applied."""
    try:
        profile = profiles[choice.profile]
    except KeyError:
        known = ", ".join(sorted(profiles))
        raise ClientProfileError(
            f"profile {choice.profile!r} is not a client profile (known: {known})"
        ) from None
    overrides = choice.overrides()
    return profile.model_copy(update=overrides) if overrides else profile


def load_profiles(folder: Path) -> dict[str, ClientProfile]:
    """hooks/clients/<name>.json, validated; the generic profile must be among them."""
    profiles: dict[str, ClientProfile] = {}
    for path in sorted(folder.glob("*.json")):
        try:
            profiles[path.stem] = ClientProfile.model_validate(
                json.loads(path.read_text(encoding="utf-8"))
            )
        except (OSError, ValueError, ValidationError) as exc:
            raise ClientProfileError(f"{path}: {exc}") from exc
    if DEFAULT_PROFILE not in profiles:
        raise ClientProfileError(f"{folder}: no {DEFAULT_PROFILE}.json client profile")
    return profiles
