"""Entry point for `flask` (found automatically) and gunicorn (`wsgi:app`)."""

from app import ConfigError, create_app

try:
    app = create_app()
except ConfigError as exc:
    raise SystemExit(f"DMarket API configuration error: {exc}") from None
