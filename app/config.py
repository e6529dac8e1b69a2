"""Settings: read from the environment once, checked, and handed to Flask's config."""

import contextlib
import ipaddress
import os
import re
import secrets
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import load_dotenv
from limits import parse_many

DEFAULT_ADMIN_CLAIM = "https://localhost:5000/app_metadata"
DEFAULT_CORS_ORIGINS = "http://localhost:3000"
DEFAULT_LOCAL_ISSUER = "http://localhost:5000/"
DEFAULT_LOCAL_AUDIENCE = "http://localhost:5000/api"
# Published in the source (earlier versions signed cookies with it): refused in production.
INSECURE_SECRET = "dev-only-insecure-secret-key"
SECRET_KEY_FILE = "secret_key"
SIGNIN_CODE_FILE = "local_signin_code"


class ConfigError(Exception):
    """A setting is missing or malformed; the message names it."""


def _str(env: Mapping, name: str, default: str | None = None) -> str | None:
    value = env.get(name)
    if value is None or str(value).strip() == "":
        return default
    return str(value).strip()


def _int(env: Mapping, name: str, default: int, minimum: int = 0) -> int:
    raw = _str(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _url(name: str, value: str, schemes=("http", "https")) -> str:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.netloc:
        raise ConfigError(f"{name} must be an absolute {'/'.join(schemes)} URL, got {value!r}")
    return value


def _origins(env: Mapping) -> list[str]:
    raw = _str(env, "CORS_ORIGINS", DEFAULT_CORS_ORIGINS)
    origins = [o.strip().rstrip("/") for o in raw.split(",") if o.strip()]
    for origin in origins:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path or origin == "*":
            raise ConfigError(f"CORS_ORIGINS entries must be origins like https://shop.example.com, got {origin!r}")
    return origins


def instance_secret(path: Path, make: Callable[[], str], setting: str) -> str:
    """Read a secret kept in instance/, creating it (mode 0600) on first use.

    Concurrent workers agree: the file appears whole and exactly once (`_create_once`), so the
    ones that lose the race read the winner's.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            _create_once(path, make())
        value = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{path} cannot be created or read ({exc.strerror}); set {setting}") from None
    if not value:
        raise ConfigError(f"{path} is empty; delete it to make a new one, or set {setting}")
    return value


def _create_once(path: Path, value: str) -> None:
    """Write `value` to `path` unless it exists: a complete private temporary file, then a hard link,
    which fails if the name is taken. Readers never see a half-written file; one writer wins."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(value)
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        os.unlink(temporary)


def _secret_key(env: Mapping, app_env: str, instance_path: str) -> tuple[str, str | None]:
    """SECRET_KEY, or (outside production) a random one kept in instance/; the file's path when used."""
    secret = _str(env, "SECRET_KEY")
    if app_env == "production" and (not secret or secret == INSECURE_SECRET or len(secret) < 32):
        raise ConfigError("SECRET_KEY must be set to a random value of 32+ characters when APP_ENV=production")
    if secret:
        return secret, None
    path = Path(instance_path) / SECRET_KEY_FILE
    return instance_secret(path, lambda: secrets.token_urlsafe(48), "SECRET_KEY"), str(path)


def _signin_code(env: Mapping, instance_path: str) -> tuple[str, str | None]:
    """The local sign-in code: LOCAL_SIGNIN_CODE, or a random one kept in instance/; the file's path when used."""
    code = _str(env, "LOCAL_SIGNIN_CODE")
    if code:
        if not re.fullmatch(r"[!-~]{8,200}", code):
            raise ConfigError("LOCAL_SIGNIN_CODE must be 8 to 200 printable ASCII characters, no spaces")
        return code, None
    path = Path(instance_path) / SIGNIN_CODE_FILE
    return instance_secret(path, lambda: secrets.token_urlsafe(18), "LOCAL_SIGNIN_CODE"), str(path)


def database_url(raw: str) -> str:
    """Normalise the URL forms providers hand out to the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if raw.startswith(prefix):
            return "postgresql+psycopg://" + raw[len(prefix) :]
    return raw


def _bool(env: Mapping, name: str, default: bool) -> bool:
    raw = _str(env, name)
    if raw is None:
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _rate(env: Mapping, name: str, default: str) -> str:
    value = _str(env, name, default)
    try:
        parse_many(value)
    except ValueError:
        raise ConfigError(f"{name} must be a rate like '60 per minute' or '10/second', got {value!r}") from None
    return value


def _engine_options(env: Mapping, url: str) -> dict:
    """Pool settings for PostgreSQL; a busy timeout for SQLite (WAL is switched on per connection)."""
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": _int(env, "SQLITE_BUSY_TIMEOUT", 15, minimum=0)}}
    return {
        "pool_size": _int(env, "DB_POOL_SIZE", 5, minimum=1),
        "max_overflow": _int(env, "DB_MAX_OVERFLOW", 10),
        "pool_recycle": _int(env, "DB_POOL_RECYCLE", 1800, minimum=1),
        "pool_timeout": _int(env, "DB_POOL_TIMEOUT", 10, minimum=1),
        "connect_args": {
            "connect_timeout": _int(env, "DB_CONNECT_TIMEOUT", 5, minimum=1),
            "application_name": _str(env, "DB_APPLICATION_NAME", "dmarket-api"),
        },
    }


def _serving(env: Mapping) -> dict:
    storage = _str(env, "RATELIMIT_STORAGE_URI", "memory://")
    if not re.match(r"^(memory|redis|rediss|redis\+cluster|redis\+sentinel)://", storage):
        raise ConfigError(f"RATELIMIT_STORAGE_URI must be memory:// or a redis:// URL, got {storage!r}")
    log_format = _str(env, "LOG_FORMAT", "text").lower()
    if log_format not in ("text", "json"):
        raise ConfigError(f"LOG_FORMAT must be text or json, got {log_format!r}")
    return {
        "LOG_FORMAT": log_format,
        "TRUSTED_PROXIES": _int(env, "TRUSTED_PROXIES", 0),
        "RATELIMIT_ENABLED": _bool(env, "RATELIMIT_ENABLED", True),
        "RATELIMIT_STORAGE_URI": storage,
        "RATELIMIT_KEY_PREFIX": _str(env, "RATELIMIT_KEY_PREFIX", "dmarket"),
        "RATELIMIT_DEFAULT": _rate(env, "RATELIMIT_DEFAULT", "1200 per minute"),
        "RATELIMIT_WRITES": _rate(env, "RATELIMIT_WRITES", "60 per minute"),
        "RATELIMIT_LOGIN": _rate(env, "RATELIMIT_LOGIN", "20 per minute"),
        "RATELIMIT_PER_ADDRESS": _rate(env, "RATELIMIT_PER_ADDRESS", "3000 per minute"),
        # Each Redis connect or read waits this long at most (once): a hung Redis counts as down.
        "REDIS_TIMEOUT_MS": _int(env, "REDIS_TIMEOUT_MS", 200, minimum=10),
        # The last guard on a search's cost (0: none); the search rules keep ordinary ones far below.
        "SEARCH_TIMEOUT_MS": _int(env, "SEARCH_TIMEOUT_MS", 250),
        "LIST_CACHE_SIZE": _int(env, "LIST_CACHE_SIZE", 256, minimum=0),
        # ...and the memory their bodies may take, per worker (whatever the rows' lengths).
        "LIST_CACHE_MB": _int(env, "LIST_CACHE_MB", 8, minimum=0),
    }


def _public_url(env: Mapping, app_env: str, *, needed: bool) -> str | None:
    """Where clients reach the API: absolute URLs (sign-in callback, logout return) are built from it.

    Never from the request's Host header, which the client chooses. Production must state it
    unless AUTH0_CALLBACK_URL and LOGOUT_REDIRECT_URL already name every absolute URL needed.
    """
    value = _str(env, "PUBLIC_URL")
    if value is None:
        if app_env == "production" and needed:
            raise ConfigError(
                "PUBLIC_URL (the API's public base URL, e.g. https://api.example.com) is required when "
                "APP_ENV=production, unless AUTH0_CALLBACK_URL and LOGOUT_REDIRECT_URL are both set"
            )
        return None if app_env == "production" else _served_url(env)
    parts = urlsplit(_url("PUBLIC_URL", value))
    if parts.query or parts.fragment:
        raise ConfigError(f"PUBLIC_URL must be a base URL without query or fragment, got {value!r}")
    return value.rstrip("/")


def _served_url(env: Mapping) -> str:
    """Where the development server runs (`make run`'s HOST and PORT): every link it prints names it.

    Loopback and wildcard binds are named `localhost`, the one host name the README uses: browser
    cookies are kept per host name, so a browser signs in on one of them, never both.
    """
    port = _int(env, "PORT", 5000, minimum=1)
    host = (_str(env, "HOST", "localhost") or "localhost").strip("[]")
    if host in ("localhost", "0.0.0.0", "::") or host.startswith("127.") or host == "::1":
        host = "localhost"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _metrics(env: Mapping) -> dict:
    """/metrics is off unless enabled; then open to METRICS_ALLOW_IPS (loopback) or a METRICS_TOKEN bearer."""
    networks = []
    entries = [e.strip() for e in (_str(env, "METRICS_ALLOW_IPS", "127.0.0.1,::1") or "").split(",") if e.strip()]
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ConfigError(f"METRICS_ALLOW_IPS entries must be addresses or networks, got {entry!r}") from None
    token = _str(env, "METRICS_TOKEN")
    if token is not None and len(token) < 16:
        raise ConfigError("METRICS_TOKEN must be at least 16 characters")
    return {
        "METRICS_ENABLED": _bool(env, "METRICS_ENABLED", False),
        "METRICS_ALLOW_IPS": tuple(networks),
        "METRICS_TOKEN": token,
        # Set by gunicorn.conf.py (or the operator): every worker's numbers are added up from there.
        "METRICS_MULTIPROC_DIR": _str(env, "PROMETHEUS_MULTIPROC_DIR"),
    }


def issuer_url(issuer: str, path: str) -> str:
    """A URL under the issuer, whether or not its identifier ends in a slash (both are common)."""
    return f"{issuer.rstrip('/')}/{path}"


def _audience_params(env: Mapping) -> tuple[str, ...]:
    raw = _str(env, "AUTH_AUDIENCE_PARAMS", "audience,resource")
    params = tuple(p.strip().lower() for p in raw.split(",") if p.strip())
    if not params or any(p not in ("audience", "resource") for p in params):
        raise ConfigError(f"AUTH_AUDIENCE_PARAMS must be audience, resource or both (comma-separated), got {raw!r}")
    return params


def _auth(env: Mapping, app_env: str, instance_path: str) -> dict:
    domain = _str(env, "AUTH0_DOMAIN")
    issuer = _str(env, "AUTH0_ISSUER")
    mode = _str(env, "AUTH_MODE", "auth0" if (domain or issuer) else "local").lower()
    if mode not in ("auth0", "local"):
        raise ConfigError(f"AUTH_MODE must be 'auth0' or 'local', got {mode!r}")
    if mode == "local":
        if app_env == "production":
            raise ConfigError("AUTH_MODE=local (development sign-in) is refused when APP_ENV=production")
        issuer = _url("AUTH0_ISSUER", issuer or DEFAULT_LOCAL_ISSUER)
        audience = _str(env, "API_AUDIENCE", DEFAULT_LOCAL_AUDIENCE)
    else:
        if not issuer and not domain:
            raise ConfigError("AUTH0_DOMAIN (or AUTH0_ISSUER) is required when AUTH_MODE=auth0")
        if domain and not re.fullmatch(r"[A-Za-z0-9.-]+(:[0-9]+)?", domain):
            raise ConfigError(f"AUTH0_DOMAIN must be a host name like tenant.eu.auth0.com, got {domain!r}")
        issuer = _url("AUTH0_ISSUER", issuer or f"https://{domain}/")
        audience = _str(env, "API_AUDIENCE")
        if not audience:
            raise ConfigError("API_AUDIENCE is required when AUTH_MODE=auth0")
    # Compared exactly as written (OpenID Connect Discovery 4.3): `iss` and discovery's `issuer`.
    code, code_file = _signin_code(env, instance_path) if mode == "local" else (None, None)
    callback = _str(env, "AUTH0_CALLBACK_URL")
    logout_to = _str(env, "LOGOUT_REDIRECT_URL")
    public_url = _public_url(env, app_env, needed=not (callback and logout_to))
    admin_emails = [e.strip().lower() for e in (_str(env, "ADMIN_EMAILS", "") or "").split(",") if e.strip()]
    for email in admin_emails:
        if "@" not in email:
            raise ConfigError(f"ADMIN_EMAILS entries must be email addresses, got {email!r}")
    return {
        "AUTH_MODE": mode,
        "AUTH0_DOMAIN": domain or urlsplit(issuer).netloc,
        "AUTH0_ISSUER": issuer,
        "API_AUDIENCE": audience,
        "ADMIN_CLAIM": _str(env, "ADMIN_CLAIM", DEFAULT_ADMIN_CLAIM),
        "JWT_LEEWAY": _int(env, "JWT_LEEWAY", 30),
        "JWKS_MIN_REFRESH_SECONDS": _int(env, "JWKS_MIN_REFRESH_SECONDS", 30),
        # A cached key set this old never accepts a token: a revoked key stops working within it.
        "JWKS_MAX_AGE_SECONDS": _int(env, "JWKS_MAX_AGE_SECONDS", 300, minimum=1),
        # ...unless the issuer fails to answer a refresh: then the old set serves this much longer, at most.
        "JWKS_STALE_IF_ERROR_SECONDS": _int(env, "JWKS_STALE_IF_ERROR_SECONDS", 600),
        # How /login names the API to the provider: Auth0's `audience`, RFC 8707's `resource`, or both.
        "AUTH_AUDIENCE_PARAMS": _audience_params(env),
        # Verified tokens remembered (LRU) until their exp; the user they map to, this many seconds.
        "TOKEN_CACHE_SIZE": _int(env, "TOKEN_CACHE_SIZE", 1024, minimum=0),
        "IDENTITY_CACHE_SECONDS": _int(env, "IDENTITY_CACHE_SECONDS", 30, minimum=0),
        "HTTP_TIMEOUT": _int(env, "HTTP_TIMEOUT", 5, minimum=1),
        "CLIENT_ID": _str(env, "CLIENT_ID"),
        "CLIENT_SECRET": _str(env, "CLIENT_SECRET"),
        # A public client (Auth0: a Single Page Application) for Swagger UI's Authorize (code + PKCE).
        "SWAGGER_UI_CLIENT_ID": _str(env, "SWAGGER_UI_CLIENT_ID") if mode == "auth0" else None,
        "AUTH0_CALLBACK_URL": _url("AUTH0_CALLBACK_URL", callback) if callback else None,
        "LOGOUT_REDIRECT_URL": _url("LOGOUT_REDIRECT_URL", logout_to) if logout_to else None,
        "PUBLIC_URL": public_url,
        "ADMIN_EMAILS": admin_emails,
        "LOCAL_SIGNIN_CODE": code,
        "LOCAL_SIGNIN_CODE_FILE": code_file,
        "API_MANAGEMENT_CLIENT_ID": _str(env, "API_MANAGEMENT_CLIENT_ID"),
        "API_MANAGEMENT_CLIENT_SECRET": _str(env, "API_MANAGEMENT_CLIENT_SECRET"),
        "API_MANAGEMENT_AUDIENCE": _url(
            "API_MANAGEMENT_AUDIENCE", _str(env, "API_MANAGEMENT_AUDIENCE", issuer_url(issuer, "api/v2/"))
        ),
    }


def load_settings(instance_path: str, overrides: Mapping | None = None) -> dict:
    """Build the app's settings from the environment (and .env) plus explicit overrides.

    `overrides` uses the same names as the environment; it is how tests configure an app.
    Raises ConfigError naming the first bad setting.
    """
    if overrides is None:
        load_dotenv(override=False)
    env = {**os.environ, **(overrides or {})}
    app_env = (_str(env, "APP_ENV", "development") or "development").lower()
    if app_env not in ("development", "production", "testing"):
        raise ConfigError(f"APP_ENV must be development, production or testing, got {app_env!r}")

    secret, secret_file = _secret_key(env, app_env, instance_path)

    default_db = "sqlite:///" + str(Path(instance_path) / "dmarket.sqlite3")
    db_url = database_url(_str(env, "DATABASE_URL", default_db))
    if "://" not in db_url:
        raise ConfigError(f"DATABASE_URL must be a URL like postgresql://user@host/db, got {db_url!r}")

    settings = {
        "APP_ENV": app_env,
        "SECRET_KEY": secret,
        "SECRET_KEY_FILE": secret_file,
        "SQLALCHEMY_DATABASE_URI": db_url,
        "SQLALCHEMY_ENGINE_OPTIONS": _engine_options(env, db_url),
        # PostgreSQL: a pooled connection idle longer than this is pinged before use (see app/extensions.py).
        "DB_PING_IDLE_SECONDS": _int(env, "DB_PING_IDLE_SECONDS", 1, minimum=0),
        "CORS_ORIGINS": _origins(env),
        "MAX_CONTENT_LENGTH": _int(env, "MAX_CONTENT_LENGTH", 64 * 1024, minimum=1024),
        # Browser sessions: a signed cookie holding a session id (rows in `sessions`); Secure/SameSite
        # follow the request's scheme.
        "SESSION_COOKIE_NAME": "dmarket_session",
        "SESSION_COOKIE_HTTPONLY": True,
        "PERMANENT_SESSION_LIFETIME": _int(env, "SESSION_LIFETIME", 8 * 3600, minimum=60),
        "LOG_LEVEL": (_str(env, "LOG_LEVEL", "INFO")).upper(),
        # `flask audit prune` deletes audit records older than this many days; 0 keeps them all.
        "AUDIT_RETENTION_DAYS": _int(env, "AUDIT_RETENTION_DAYS", 0),
        **_serving(env),
        **_metrics(env),
        **_auth(env, app_env, instance_path),
    }
    if settings["LOG_LEVEL"] not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {settings['LOG_LEVEL']!r}")
    # Anything else passed explicitly (TESTING, pool options...) goes through untouched.
    for key, value in (overrides or {}).items():
        settings.setdefault(key, value)
    return settings
