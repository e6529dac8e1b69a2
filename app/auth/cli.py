"""Command line: `flask auth token EMAIL` and `flask auth signin-link` (local mode), `flask admin grant|revoke|list`."""

import click
from flask import current_app
from flask.cli import AppGroup

from app.errors import ApiError
from app.services import users

auth_cli = AppGroup("auth", help="Development access tokens (AUTH_MODE=local only).")
admin_cli = AppGroup("admin", help="Grant, revoke and list admins (for the first admin, or without a browser).")


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


@auth_cli.command("signin-link")
def signin_link() -> None:
    """Print the development sign-in link, with this server's sign-in code."""
    cfg = current_app.config
    if cfg["AUTH_MODE"] != "local":
        raise click.ClickException("the sign-in code exists only with AUTH_MODE=local; Auth0 signs people in otherwise")
    click.echo(f"{cfg['AUTH0_ISSUER']}login?code={cfg['LOCAL_SIGNIN_CODE']}")


def _set_admin(email: str, is_admin: bool) -> None:
    try:
        changed = users.set_admin(email=email, is_admin=is_admin)
    except ApiError as exc:
        raise click.ClickException(exc.message) from None
    management = current_app.extensions["dmarket.auth"]["management"]
    for user in changed:
        synced = ""
        if management is not None:
            synced = " (Auth0 updated)" if management.set_admin(user.user_id, is_admin) else " (Auth0 update FAILED)"
        click.echo(f"{user.user_id} <{user.email}>: admin={'yes' if is_admin else 'no'}{synced}")


@admin_cli.command("grant")
@click.argument("email")
def grant(email: str) -> None:
    """Make the user(s) with EMAIL admins (they must have signed in once)."""
    _set_admin(email, True)


@admin_cli.command("revoke")
@click.argument("email")
def revoke(email: str) -> None:
    """Take admin away from the user(s) with EMAIL (never the last admin)."""
    _set_admin(email, False)


@admin_cli.command("list")
def list_admins() -> None:
    """Print the admins recorded here (admins by token claim alone are not listed)."""
    admins = users.admins()
    for user in admins:
        click.echo(f"{user.user_id}\t{user.email or '-'}\t{user.name or '-'}")
    if not admins:
        click.echo("No admins yet: `flask admin grant EMAIL` after that user has signed in once, or set ADMIN_EMAILS.")
