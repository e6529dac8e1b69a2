"""Prometheus metrics at /metrics: off unless METRICS_ENABLED, and then only for allowed scrapers.

Under gunicorn every worker writes its numbers to files in PROMETHEUS_MULTIPROC_DIR
(gunicorn.conf.py creates it empty at start) and a scrape adds them up, whichever worker
answers. Without it (flask run, tests) the numbers live in this process.

When metrics are off, nothing here runs per request: `init_app` registers no hooks and
the one-line hooks elsewhere (`token_rejected`, `rate_limited`) return at once.
prometheus_client is imported only when enabled: it picks its multiprocess mode from the
environment when first imported, which must happen after gunicorn has set the directory.
"""

import hmac
import ipaddress
import time
from collections.abc import Callable
from types import SimpleNamespace

from flask import Flask, Response, abort, current_app, g, request

EXTENSION = "dmarket.metrics"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Token rejections are counted by a short reason (a bounded label set), from the verifier's message.
REJECTION_REASONS = (
    ("expired", "expired"),
    ("signature", "bad_signature"),
    ("unknown key", "unknown_key"),
    ("algorithm", "algorithm"),
    ("not an access token", "wrong_type"),
    ("no key id", "no_key_id"),
    ("not valid yet", "not_yet_valid"),
    ("lacks required claims", "missing_claim"),
    ("claim is not accepted", "invalid_claim"),
    ("malformed", "malformed"),
)
# The `method` label's values: anything else a client invents counts as "other" (one series, not one each).
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_instruments: SimpleNamespace | None = None


def _build() -> SimpleNamespace:
    """The metric objects, once per process (prometheus_client refuses to register a name twice)."""
    global _instruments
    if _instruments is None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        registry = CollectorRegistry()
        _instruments = SimpleNamespace(
            registry=registry,
            requests=Counter(
                "dmarket_http_requests",
                "HTTP requests answered, by route template, method and status.",
                ["route", "method", "status"],
                registry=registry,
            ),
            latency=Histogram(
                "dmarket_http_request_duration_seconds",
                "Time from the first request hook to the response, by route template and method.",
                ["route", "method"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            rate_limited=Counter(
                "dmarket_rate_limited_requests", "Requests refused with 429, by route.", ["route"], registry=registry
            ),
            token_rejections=Counter(
                "dmarket_token_rejections", "Access tokens refused, by reason.", ["reason"], registry=registry
            ),
            audit_records=Counter(
                "dmarket_audit_records",
                "Audit records written (privileged actions), by action and outcome (done, refused).",
                ["action", "outcome"],
                registry=registry,
            ),
            jwks_fetches=Counter("dmarket_jwks_fetches", "Fetches of the issuer's signing keys.", registry=registry),
            jwks_failures=Counter(
                "dmarket_jwks_fetch_failures", "Fetches of the issuer's signing keys that failed.", registry=registry
            ),
            provider_up=Gauge(
                "dmarket_identity_provider_up",
                "1 when the issuer's last key fetch succeeded, 0 when it failed (lowest of the live workers).",
                registry=registry,
                multiprocess_mode="livemin",
            ),
            pool_in_use=Gauge(
                "dmarket_db_pool_connections_in_use",
                "Database connections checked out of the pool now (all live workers).",
                registry=registry,
                multiprocess_mode="livesum",
            ),
            pool_wait=Histogram(
                "dmarket_db_pool_checkout_seconds",
                "Time to get a database connection from the pool (a full pool shows as a long tail).",
                buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0),
                registry=registry,
            ),
            pool_timeouts=Counter(
                "dmarket_db_pool_timeouts", "Waits for a connection that ran out (DB_POOL_TIMEOUT).", registry=registry
            ),
            build_info=Gauge(
                "dmarket_build_info",
                "Always 1; the labels say which build is running.",
                ["version"],
                registry=registry,
                multiprocess_mode="max",
            ),
        )
    return _instruments


def init_app(app: Flask) -> None:
    """Hooks and the /metrics route when METRICS_ENABLED; nothing at all otherwise."""
    if not app.config["METRICS_ENABLED"]:
        return
    from app import __version__
    from app.extensions import db

    metrics = _build()
    metrics.build_info.labels(version=__version__).set(1)
    app.extensions[EXTENSION] = metrics
    # First of the before-request hooks, so a request refused by a later one (401) is timed too.
    app.before_request_funcs.setdefault(None, []).insert(0, _start)
    app.after_request(_count)
    app.add_url_rule("/metrics", "metrics", export)
    limiter = app.extensions.get("dmarket.limiter")
    if limiter is not None:
        limiter.exempt(export)
    with app.app_context():
        _watch_pool(db.engine, metrics)


def _start() -> None:
    g.metrics_start = time.perf_counter()


def _route() -> str:
    """The matched rule's template (`/products/<product_id:product_id>`), never the path a client typed."""
    rule = request.url_rule
    return rule.rule if rule is not None else "<unmatched>"


def _method() -> str:
    method = request.method
    return method if method in KNOWN_METHODS else "other"


def _count(response):
    metrics = current_app.extensions[EXTENSION]
    route, method = _route(), _method()
    metrics.requests.labels(route, method, str(response.status_code)).inc()
    started = g.get("metrics_start")
    if started is not None:
        metrics.latency.labels(route, method).observe(time.perf_counter() - started)
    return response


def _watch_pool(engine, metrics: SimpleNamespace) -> None:
    """Connections in use (pool events) and the time to get one (the engine's only way to a connection)."""
    from sqlalchemy import event
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    event.listen(engine, "checkout", lambda *_: metrics.pool_in_use.inc())
    event.listen(engine, "checkin", lambda *_: metrics.pool_in_use.dec())
    raw_connection = engine.raw_connection

    def timed_raw_connection():
        started = time.perf_counter()
        try:
            return raw_connection()
        except PoolTimeout:
            metrics.pool_timeouts.inc()
            raise
        finally:
            metrics.pool_wait.observe(time.perf_counter() - started)

    engine.raw_connection = timed_raw_connection


def _allowed() -> bool:
    cfg = current_app.config
    token = cfg["METRICS_TOKEN"]
    if token:
        scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(sent.strip().encode(), token.encode()):
            return True
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    return any(address in network for network in cfg["METRICS_ALLOW_IPS"])


def export():
    """The Prometheus text format; 404 to anyone else, so the endpoint is not even advertised."""
    if not _allowed():
        abort(404)
    from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, generate_latest, multiprocess

    directory = current_app.config["METRICS_MULTIPROC_DIR"]
    if directory:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=directory)
    else:
        registry = current_app.extensions[EXTENSION].registry
    return Response(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})


def token_rejected(message: str) -> None:
    metrics = current_app.extensions.get(EXTENSION)
    if metrics is not None:
        reason = next((label for words, label in REJECTION_REASONS if words in message), "other")
        metrics.token_rejections.labels(reason).inc()


def audit_recorded(action: str, outcome: str) -> None:
    metrics = current_app.extensions.get(EXTENSION)
    if metrics is not None:
        metrics.audit_records.labels(action, outcome).inc()


def rate_limited() -> None:
    metrics = current_app.extensions.get(EXTENSION)
    if metrics is not None:
        metrics.rate_limited.labels(_route()).inc()


def watch_jwks(app: Flask, fetch: Callable[[], dict]) -> Callable[[], dict]:
    """Count the issuer key fetches and their failures, and say whether it answers (the fetch is unchanged)."""
    if not app.config["METRICS_ENABLED"]:
        return fetch
    metrics = _build()

    def counted() -> dict:
        metrics.jwks_fetches.inc()
        try:
            keys = fetch()
        except Exception:
            metrics.jwks_failures.inc()
            metrics.provider_up.set(0)
            raise
        metrics.provider_up.set(1)
        return keys

    return counted
