"""Secret references: settings never hold a secret, only where to find it.

A reference is one of ``env:VAR`` (an environment variable), ``file:/path`` (a file, e.g. a
Docker secret) or ``gsm:projects/P/secrets/S/versions/V`` (Google Secret Manager, as the
original system used). :func:`resolve` turns a reference into the secret at the moment it is
needed, so a secret is never part of the printed or logged configuration.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, SecretStr

from guardian.errors import ConfigError

_REF = re.compile(r"^(env:[A-Za-z_][A-Za-z0-9_]*|file:/.+|gsm:projects/[^/]+/secrets/[^/]+(/versions/[^/]+)?)$")

REFERENCE_HELP = (
    "give a reference instead: env:VAR_NAME (the secret in an env var), file:/path "
    "(a file such as a Docker secret) or gsm:projects/P/secrets/S/versions/latest"
)

# Values that are clearly not references but look like a secret were typed in directly.
_PLAIN_HINT = "a plain secret was given where a secret reference is expected; "


def _check_ref(value: str) -> str:
    if not _REF.match(value):
        # Never echo the value: it may be the secret itself.
        raise ValueError(_PLAIN_HINT + REFERENCE_HELP)
    return value


SecretRef = Annotated[str, AfterValidator(_check_ref)]
"""A setting that names where a secret lives (validated shape, never the secret)."""


def resolve(ref: str, *, setting: str = "secret") -> SecretStr:
    """Return the secret a reference points to; raise ConfigError naming the setting if absent."""
    kind, _, rest = ref.partition(":")
    if kind == "env":
        value = os.environ.get(rest)
        if value is None:
            raise ConfigError(f"{setting}: env var {rest} is not set; export it or change the reference")
        return SecretStr(value)
    if kind == "file":
        path = Path(rest)
        try:
            return SecretStr(path.read_text(encoding="utf-8").strip())
        except OSError as exc:
            raise ConfigError(f"{setting}: cannot read secret file {path} ({exc.strerror}); fix the path") from exc
    if kind == "gsm":
        return _from_secret_manager(rest, setting)
    raise ConfigError(f"{setting}: {_PLAIN_HINT}{REFERENCE_HELP}")


def _from_secret_manager(name: str, setting: str) -> SecretStr:
    if "/versions/" not in name:
        name = name + "/versions/latest"
    try:
        from google.cloud import secretmanager
    except ImportError as exc:
        raise ConfigError(
            f"{setting}: gsm: references need google-cloud-secret-manager; install it or use env:/file:"
        ) from exc
    client = secretmanager.SecretManagerServiceClient()
    response = client.access_secret_version(name=name, timeout=30)
    return SecretStr(response.payload.data.decode("utf-8"))
