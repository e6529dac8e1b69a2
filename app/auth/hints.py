"""What a refused caller is told to do next, and the one address browsers sign in on.

A 401 names the way to a valid credential in this mode (the sign-in page at the API's
public address; `flask auth token` locally). Browser cookies belong to one host name: on
the other loopback name (127.0.0.1 for localhost, or the reverse) a browser is not signed
in, so in development its pages are sent to the public address, and its 401s say why.
"""

from urllib.parse import urlsplit

from flask import Flask, current_app, redirect, request

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
PAGE_PREFIXES = ("/openapi", "/login", "/signed-out")


def sign_in_url() -> str:
    """The sign-in page at the API's public address (a relative path when none is configured)."""
    return f"{current_app.config['PUBLIC_URL'] or ''}/login"


def how_to_sign_in(*, again: bool = False) -> str:
    """How to get a credential the API accepts, in this mode: a clause to end a sentence with."""
    cfg = current_app.config
    verb = "sign in again" if again else "sign in"
    if cfg["AUTH_MODE"] == "local":
        return (
            f"{verb} at {sign_in_url()} (the link the server logs carries its sign-in code), "
            "or run `flask auth token EMAIL` for a bearer token"
        )
    return (
        f"{verb} at {sign_in_url()}, or send an access token from {cfg['AUTH0_ISSUER']} "
        f"with the audience {cfg['API_AUDIENCE']}"
    )


def _canonical_netloc() -> str | None:
    public = current_app.config["PUBLIC_URL"]
    return urlsplit(public).netloc.lower() if public else None


def _loopback_alias(host: str, canonical: str) -> bool:
    """Another loopback name for the same port: localhost:8350 and 127.0.0.1:8350 are one server, two hosts."""
    name, _, port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
    canonical_name, _, canonical_port = (
        canonical.rpartition(":") if not canonical.endswith("]") else (canonical, "", "")
    )
    return host != canonical and port == canonical_port and {name, canonical_name} <= LOOPBACK_NAMES


def other_host_hint() -> str:
    """Why a browser on the other loopback name is not signed in; empty on the public address."""
    canonical = _canonical_netloc()
    if canonical is None or not _loopback_alias(request.host.lower(), canonical):
        return ""
    return (
        f" This request went to {request.host}, but browser sign-in cookies are kept per host name and "
        f"this API's address is {current_app.config['PUBLIC_URL']}: use that one."
    )


def challenge(description: str, *, error: str | None = None) -> str:
    """A Bearer WWW-Authenticate value (RFC 6750) whose description says what to do."""
    safe = "".join(ch for ch in description if ch not in '"\\' and 32 <= ord(ch) < 127)
    code = f'error="{error}", ' if error else ""
    return f'Bearer {code}error_description="{safe}"'


def _to_public_address():
    """Development: a page opened on the other loopback name goes to the public address, where sign-in holds."""
    if request.method not in ("GET", "HEAD") or not request.path.startswith(PAGE_PREFIXES):
        return None
    canonical = _canonical_netloc()
    if canonical is None or not _loopback_alias(request.host.lower(), canonical):
        return None
    return redirect(current_app.config["PUBLIC_URL"] + request.full_path.rstrip("?"), 307)


def init_app(app: Flask) -> None:
    if app.config["APP_ENV"] == "development":
        app.before_request(_to_public_address)
