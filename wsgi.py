"""Entry point for `flask` (found automatically) and gunicorn (`wsgi:app`)."""

from http.server import BaseHTTPRequestHandler

from werkzeug.serving import WSGIRequestHandler

from app import ConfigError, create_app


def _send_response_without_banner(self, code, message=None):
    """`flask run`'s server: no `Server: Werkzeug/x Python/y` (gunicorn.conf.py drops gunicorn's)."""
    self.log_request(code)
    self.send_response_only(code, message)
    self.send_header("Date", self.date_time_string())


if WSGIRequestHandler.send_response is BaseHTTPRequestHandler.send_response:
    WSGIRequestHandler.send_response = _send_response_without_banner

try:
    app = create_app()
except ConfigError as exc:
    raise SystemExit(f"DMarket API configuration error: {exc}") from None
