"""Provider presets: the settings a profile can start from."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from postroom.api.deps import TokenDep
from postroom.domain.presets import PRESETS, find_preset
from postroom.errors import InvalidInputError

router = APIRouter(prefix="/api/presets", tags=["presets"])


@router.get("")
def list_presets(_token: TokenDep) -> list[dict[str, Any]]:
    return [preset.as_dict() for preset in PRESETS]


@router.get("/{name}")
def get_preset(name: str, _token: TokenDep) -> dict[str, Any]:
    """Resolve one preset, with its region for per-region providers
    (``ses-eu-west-1``)."""
    try:
        resolved = find_preset(name)
    except InvalidInputError as exc:
        # The service names its "preset" field; here the preset is the path.
        raise InvalidInputError(exc.message, field="name") from exc
    return {
        "name": resolved.name,
        "provider": resolved.provider,
        "region": resolved.region,
        "note": resolved.note,
        "documentation": resolved.documentation,
        **{
            key: getattr(value, "value", value)
            for key, value in resolved.profile_values().items()
        },
    }
