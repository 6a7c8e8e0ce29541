"""Small building blocks shared by every settings section."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict
from pydantic_settings import NoDecode


def _split_csv(value: Any) -> Any:
    """Accept ``a,b,c`` from an env var as well as a JSON list or a Python list."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import json

            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


CsvList = Annotated[list[str], NoDecode, BeforeValidator(_split_csv)]
"""A list setting written ``a,b,c`` (or as a JSON list) in env vars and .env files."""


class Section(BaseModel):
    """A nested settings section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)
