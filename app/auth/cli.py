"""`flask auth token EMAIL`: a signed access token from the local issuer, for curl and Swagger UI."""

import click
from flask import current_app
from flask.cli import AppGroup

auth_cli = AppGroup("auth", help="Development access tokens (AUTH_MODE=local only).")


@auth_cli.command("token")
@click.argument("email")
@click.option("--name", help="Display name (default: the part of EMAIL before @).")
@click.option("--admin", is_flag=True, help="Grant admin through the token's admin claim.")
@click.option(
    "--ttl", type=click.IntRange(60, 30 * 86400), default=3600, show_default=True, help="Lifetime in seconds."
)
def token(email: str, name: str | None, admin: bool, ttl: int) -> None:
    """Print an access token for EMAIL signed by the local issuer."""
    issuer = current_app.extensions["dmarket.auth"]["local_issuer"]
    if issuer is None:
        raise click.ClickException("tokens can only be minted with AUTH_MODE=local; Auth0 issues them otherwise")
    if "@" not in email or len(email) > 320:
        raise click.BadParameter("must be an email address", param_hint="EMAIL")
    click.echo(issuer.mint(email=email, name=name, admin=admin, ttl=ttl))
