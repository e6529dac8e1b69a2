"""DMarket API: a products marketplace back-end with verified bearer tokens."""

import functools

from flask import redirect, request
from flask_openapi3 import Info
from sqlalchemy import event

from app import auth, console, limits, metrics
from app.config import ConfigError, load_settings
from app.errors import register_error_handlers, validation_error_response
from app.extensions import cors, db, migrate, ping_when_idle
from app.http import register_body_guard, register_request_hooks
from app.logs import configure_logging
from app.openapi import DMarketOpenAPI
from app.schemas.common import ErrorOut

__all__ = ["ConfigError", "create_app"]
__version__ = "1.0.0"

# The browser session (the HttpOnly `dmarket_session` cookie set by /login) also authenticates, but it
# is not a scheme here: Swagger UI cannot set a cookie, so its Authorize dialog would offer a box
# that authorizes into nothing. The cookie is described where readers look instead.
SESSION_COOKIE = (
    "A browser signed in at /login is authenticated by the HttpOnly `dmarket_session` cookie instead: "
    "this page (Swagger UI) sends it by itself, with nothing to paste. Writes authenticated by the cookie "
    "alone must send an Origin (or Referer) that is the API itself or one of CORS_ORIGINS."
)
SECURITY_SCHEMES = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An RS256 access token from the configured issuer (Auth0, or `flask auth token` locally; "
        f"the local sign-in page shows one). {SESSION_COOKIE}",
    },
}
DESCRIPTION = (
    "Products marketplace API. Anyone reads; signed-in users create, and owners or admins change and delete. "
    f"Sign in at [/login](/login), or use **Authorize** with a bearer token. {SESSION_COOKIE}"
)


def create_app(config: dict | None = None) -> DMarketOpenAPI:
    """Build the app. `config` (environment-style names) replaces reading the environment/.env."""
    app = DMarketOpenAPI(
        __name__,
        instance_path=(config or {}).get("INSTANCE_PATH"),
        info=Info(title="DMarket API", version=__version__, description=DESCRIPTION),
        security_schemes=SECURITY_SCHEMES,
        doc_prefix="/openapi",
        validation_error_status=422,
        validation_error_model=ErrorOut,
        validation_error_callback=validation_error_response,
    )
    app.config.from_mapping(load_settings(app.instance_path, config))

    configure_logging(app)
    register_extensions(app)
    register_request_hooks(app)
    limiter = limits.init_app(app)  # its hook counts every request before authentication can refuse it
    auth.init_app(app)
    register_body_guard(app)
    register_blueprints(app, limiter)
    console.init_app(app)
    register_error_handlers(app)
    metrics.init_app(app)
    return app


def register_extensions(app: DMarketOpenAPI) -> None:
    db.init_app(app)
    with app.app_context():
        if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
            event.listen(db.engine, "connect", _sqlite_pragmas)
        else:
            event.listen(db.engine, "connect", _postgres_utc_session)
            ping_when_idle(db.engine, app.config["DB_PING_IDLE_SECONDS"])
    migrate.init_app(app, db)
    hooks = list(app.after_request_funcs.get(None, ()))
    cors.init_app(
        app,
        origins=app.config["CORS_ORIGINS"],
        supports_credentials=True,
        allow_headers=["Authorization", "Content-Type", "If-Match", "Idempotency-Key", "X-Request-ID"],
        expose_headers=[
            "ETag",
            "Link",
            "Location",
            "Idempotent-Replayed",
            "X-Total-Count",
            "X-Next-Cursor",
            "X-Search-Truncated",
            "X-Request-ID",
            "Retry-After",
            "X-RateLimit-Limit",
            "X-RateLimit-Remaining",
            "X-RateLimit-Reset",
        ],  # fmt: skip
        methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        max_age=600,
        always_send=False,
    )
    added = app.after_request_funcs[None]
    added[:] = [hook if hook in hooks else _cross_origin_only(hook) for hook in added]


def _cross_origin_only(cors_hook):
    """Flask-CORS's after-request hook, run only for requests that carry an Origin.

    Without one, it adds no header at all (`always_send=False`; the CORS protocol does not
    apply), yet first matches the path against its resources and logs: 20-35 us in-process,
    5-8% of a product read, paid by every client that is not a browser page on another origin.
    Its error-handler wrapping (`intercept_exceptions`) is left as it is.
    """

    @functools.wraps(cors_hook)
    def hook(response):
        if "HTTP_ORIGIN" not in request.environ:
            return response
        return cors_hook(response)

    return hook


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """WAL lets readers run beside a writer; SQLite leaves foreign keys off unless asked."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _postgres_utc_session(dbapi_connection, _record) -> None:
    """Each new connection's session in UTC, as Django sets its own: timestamps then arrive as
    UTC datetimes, which psycopg decodes in half the time of a named zone's and UTCDateTime
    passes through. Only when the server's default is another name ('Etc/UTC' included)."""
    if dbapi_connection.info.parameter_status("TimeZone") != "UTC":
        dbapi_connection.execute("SET TIME ZONE 'UTC'")
        dbapi_connection.commit()


def register_blueprints(app: DMarketOpenAPI, limiter: limits.RateLimiter) -> None:
    from app import models  # noqa: F401  (models must be known to Flask-Migrate)
    from app.routes.admin import bp as admin_bp
    from app.routes.health import bp as health_bp
    from app.routes.products import ProductIdConverter
    from app.routes.products import bp as products_bp
    from app.routes.users import bp as users_bp

    app.url_map.converters["product_id"] = ProductIdConverter
    signin_bp = auth.signin_blueprint(app)
    limiter.limit_writes(products_bp, admin_bp, users_bp)
    limiter.limit_sign_in(signin_bp)
    limiter.exempt(health_bp)
    for bp in (health_bp, products_bp, users_bp, admin_bp, signin_bp):
        app.register_api(bp)
    app.add_url_rule("/", "index", lambda: redirect("/openapi"))
