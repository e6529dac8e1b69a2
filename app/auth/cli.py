"""Command line: `flask auth token EMAIL` and `flask auth signin-link` (local mode), `flask admin grant|revoke|list`,
`flask audit prune`.

`grant`/`revoke` follow the API's rule: an EMAIL reaches only accounts whose email the
provider verified; `--user-id` reaches exactly one account.
"""

import click
from flask import current_app
from flask.cli import AppGroup

from app.auth import local_signin_url
from app.errors import ApiError
from app.services import audit, users

auth_cli = AppGroup("auth", help="Development access tokens (AUTH_MODE=local only).")
admin_cli = AppGroup("admin", help="Grant, revoke and list admins (for the first admin, or without a browser).")
audit_cli = AppGroup("audit", help="The audit trail of privileged actions.")


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
    click.echo(local_signin_url(cfg, cfg["LOCAL_SIGNIN_CODE"]))


def _set_admin(email: str | None, user_id: str | None, is_admin: bool) -> None:
    if (email is None) == (user_id is None):
        raise click.UsageError("give exactly one of EMAIL or --user-id")
    try:
        change = users.set_admin(email=email, user_id=user_id, is_admin=is_admin, actor=audit.cli_actor())
    except ApiError as exc:
        skipped = exc.details.get("skipped_unverified", []) if isinstance(exc.details, dict) else []
        for skipped_id in skipped:
            click.echo(f"{skipped_id}: skipped, the identity provider has not verified its email", err=True)
        raise click.ClickException(exc.message) from None
    management = current_app.extensions["dmarket.auth"]["management"]
    for user in change.updated:
        synced = ""
        if management is not None:
            synced = " (Auth0 updated)" if management.set_admin(user.user_id, is_admin) else " (Auth0 update FAILED)"
        click.echo(f"{user.user_id} <{user.email}>: admin={'yes' if is_admin else 'no'}{synced}")
    for user in change.skipped_unverified:
        click.echo(f"{user.user_id} <{user.email}>: skipped, the identity provider has not verified this email")


_EMAIL = click.argument("email", required=False)
_USER_ID = click.option("--user-id", help="Exactly this account (the provider's subject) instead of an email.")


@admin_cli.command("grant")
@_EMAIL
@_USER_ID
def grant(email: str | None, user_id: str | None) -> None:
    """Make admins of the accounts whose verified email is EMAIL, or of --user-id (signed in once)."""
    _set_admin(email, user_id, True)


@admin_cli.command("revoke")
@_EMAIL
@_USER_ID
def revoke(email: str | None, user_id: str | None) -> None:
    """Take admin from the accounts whose verified email is EMAIL, or from --user-id (never the last admin)."""
    _set_admin(email, user_id, False)


@admin_cli.command("list")
def list_admins() -> None:
    """Print the admins recorded here (admins by token claim alone are not listed; disabled ones say so)."""
    admins = users.admins()
    for user in admins:
        state = "\tdisabled" if user.disabled_at else ""
        click.echo(f"{user.user_id}\t{user.email or '-'}\t{user.name or '-'}{state}")
    if not admins:
        click.echo(
            "No admins yet: `flask admin grant EMAIL` (a verified email) or `flask admin grant --user-id ID`"
            " after that user has signed in once, or set ADMIN_EMAILS."
        )


@audit_cli.command("prune")
@click.option(
    "--days",
    type=click.IntRange(min=1),
    help="Delete records older than this many days (default: AUDIT_RETENTION_DAYS).",
)
def prune(days: int | None) -> None:
    """Delete audit records older than AUDIT_RETENTION_DAYS (or --days); the pruning is itself recorded."""
    days = days or current_app.config["AUDIT_RETENTION_DAYS"]
    if not days:
        click.echo("AUDIT_RETENTION_DAYS is 0: every audit record is kept (pass --days to prune once).")
        return
    deleted = audit.prune(days=days, actor=audit.cli_actor())
    click.echo(f"{deleted} audit record(s) older than {days} day(s) deleted; the pruning is recorded.")
