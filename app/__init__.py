"""DMarket API: a products marketplace back-end with verified bearer tokens."""

from flask import redirect
from flask_openapi3 import Info, OpenAPI
from flask_openapi3_swagger.templates import swagger_html_string

from app import auth
from app.config import ConfigError, load_settings
from app.errors import register_error_handlers, validation_error_response
from app.extensions import cors, db, migrate
from app.http import register_body_guard, register_request_hooks
from app.logs import configure_logging
from app.schemas.common import ErrorOut

__all__ = ["ConfigError", "create_app"]
__version__ = "1.0.0"

SECURITY_SCHEMES = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An RS256 access token from the configured issuer (Auth0, or `flask auth token` locally).",
    }
}
# Swagger UI itself at /openapi/ (assets are served by the app: no CDN, works offline).
SWAGGER_AT_ROOT = swagger_html_string.replace("{{doc_url}}", "openapi.json").replace(
    "{{ oauth_config|tojson }}", "null"
)


def create_app(config: dict | None = None) -> OpenAPI:
    """Build the app. `config` (environment-style names) replaces reading the environment/.env."""
    app = OpenAPI(
        __name__,
        instance_path=(config or {}).get("INSTANCE_PATH"),
        info=Info(title="DMarket API", version=__version__, description="Products marketplace API."),
        security_schemes=SECURITY_SCHEMES,
        doc_prefix="/openapi",
        validation_error_status=422,
        validation_error_model=ErrorOut,
        validation_error_callback=validation_error_response,
    )
    app.config.from_mapping(load_settings(app.instance_path, config))
    app.config["OPENAPI_HTML_STRING"] = SWAGGER_AT_ROOT

    configure_logging(app)
    register_extensions(app)
    register_request_hooks(app)
    auth.init_app(app)
    register_body_guard(app)
    register_blueprints(app)
    register_error_handlers(app)
    return app


def register_extensions(app: OpenAPI) -> None:
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {"pool_pre_ping": True})
    db.init_app(app)
    migrate.init_app(app, db)
    cors.init_app(
        app,
        origins=app.config["CORS_ORIGINS"],
        supports_credentials=True,
        allow_headers=["Authorization", "Content-Type", "If-Match", "X-Request-ID"],
        expose_headers=["ETag", "Link", "Location", "X-Total-Count", "X-Request-ID", "Retry-After"],
        methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
        max_age=600,
        always_send=False,
    )


def register_blueprints(app: OpenAPI) -> None:
    from app import models  # noqa: F401  (models must be known to Flask-Migrate)
    from app.routes.products import bp as products_bp

    app.register_api(products_bp)
    app.add_url_rule("/", "index", lambda: redirect("/openapi"))
