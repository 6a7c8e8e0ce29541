"""``guardian web ...``: helpers for the standalone UI's users."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(help="The standalone web UI: user password hashes.", no_args_is_help=True)


@app.command("hash-password")
def hash_password_cmd(
    password: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            help="The password (prompted without echo when omitted; avoid passing it on the command line).",
        ),
    ],
) -> None:
    """Print the argon2id hash to store in the secret a GUARDIAN_WEB__USERS entry references."""
    from guardian.errors import ValidationFailed
    from guardian.web.auth import hash_password

    if len(password) < 12:
        raise ValidationFailed("password: use at least 12 characters")
    print(hash_password(password))
