"""Prometheus metrics at /metrics: closed unless enabled, numbers that move with real requests."""

import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from app import __version__, create_app
from app.config import ConfigError
from app.models import Product
from tests.factories import bearer
from tests.live import LiveServer

TOKEN = "metrics-scrape-secret-0123456789"
PRODUCT = {"name": "Lamp", "description": "A desk lamp", "price": "19.99", "quantity": 3}


def samples(text: str) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} from the Prometheus text format."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(scraped: dict, name: str, **labels) -> float:
    return scraped.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(client) -> dict:
    response = client.get("/metrics")
    assert response.status_code == 200, response.get_data(as_text=True)
    return samples(response.get_data(as_text=True))


@pytest.fixture
def metered(make_app):
    return make_app(METRICS_ENABLED="true").test_client()


def test_metrics_are_off_by_default_and_look_like_any_unknown_path(client):
    missing = client.get("/metrics")
    assert missing.status_code == 404
    assert missing.get_json() == client.get("/no-such-page").get_json()
    assert "/metrics" not in client.get("/openapi/openapi.json").get_json()["paths"]


def test_enabled_metrics_answer_loopback_in_the_prometheus_format(metered):
    response = metered.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert value(samples(response.get_data(as_text=True)), "dmarket_build_info", version=__version__) == 1.0
    # Not an API operation: no JSON, so not in the spec either.
    assert "/metrics" not in metered.get("/openapi/openapi.json").get_json()["paths"]


def test_other_addresses_get_404_unless_they_bring_the_token(make_app):
    app = make_app(METRICS_ENABLED="true", METRICS_ALLOW_IPS="10.0.0.0/8", METRICS_TOKEN=TOKEN)
    client = app.test_client()
    assert client.get("/metrics").status_code == 404  # 127.0.0.1 is no longer allowed
    assert client.get("/metrics", headers=bearer("wrong-token-0123456789")).status_code == 404
    assert client.get("/metrics", headers=bearer(TOKEN)).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "192.168.1.9"}).status_code == 404


@pytest.mark.parametrize(
    ("settings_", "message"),
    [
        ({"METRICS_ALLOW_IPS": "10.0.0.0/8,nonsense"}, "METRICS_ALLOW_IPS entries must be addresses or networks"),
        ({"METRICS_TOKEN": "short"}, "METRICS_TOKEN must be at least 16 characters"),
        ({"METRICS_ENABLED": "maybe"}, "METRICS_ENABLED must be true or false"),
    ],
)
def test_bad_metrics_settings_are_refused_at_start(settings, settings_, message):
    with pytest.raises(ConfigError, match=message):
        create_app({**settings, **settings_})


def test_requests_are_counted_by_route_template_method_and_status(metered, app, user_headers):
    route = "/products/<product_id:product_id>"
    before = scrape(metered)
    created = metered.post("/products/create", json=PRODUCT, headers=user_headers)
    assert created.status_code == 201
    product_id = created.get_json()["id"]
    for path in (f"/products/{product_id}", f"/products/{product_id}", "/products/999999"):
        metered.get(path)
    after = scrape(metered)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("dmarket_http_requests_total", route=route, method="GET", status="200") == 2
    assert moved("dmarket_http_requests_total", route=route, method="GET", status="404") == 1
    assert moved("dmarket_http_requests_total", route="/products/create", method="POST", status="201") == 1
    assert moved("dmarket_http_request_duration_seconds_count", route=route, method="GET") == 3
    assert moved("dmarket_http_request_duration_seconds_bucket", route=route, method="GET", le="+Inf") == 3
    assert not any(route_ == f"/products/{product_id}" for (_, labels) in after for (key, route_) in labels)
    # The database pool: connections were taken and all given back.
    assert moved("dmarket_db_pool_checkout_seconds_count") >= 1
    assert moved("dmarket_db_pool_connections_in_use") == 0
    with app.app_context():
        assert Product.query.count() == 1


def test_token_rejections_are_counted_by_reason(metered, issuer):
    before = scrape(metered)
    expired = issuer.token(exp=int(time.time()) - 3600)
    for token in ("not-a-token", expired, expired):
        assert metered.get("/me", headers=bearer(token)).status_code == 401
    after = scrape(metered)
    for reason, count in (("malformed", 1), ("expired", 2)):
        name = "dmarket_token_rejections_total"
        assert value(after, name, reason=reason) - value(before, name, reason=reason) == count


def test_rate_limited_requests_are_counted(make_app, user_headers):
    client = make_app(METRICS_ENABLED="true", RATELIMIT_WRITES="1 per minute").test_client()
    before = scrape(client)
    assert client.post("/products/create", json=PRODUCT, headers=user_headers).status_code == 201
    refused = client.post("/products/create", json=PRODUCT, headers=user_headers)
    assert refused.status_code == 429 and refused.get_json()["code"] == "rate_limited"
    name = "dmarket_rate_limited_requests_total"
    assert value(scrape(client), name, route="/products/create") - value(before, name, route="/products/create") == 1


def test_jwks_fetches_and_failures_are_counted(make_app, issuer, user_headers):
    before = samples(make_app(METRICS_ENABLED="true").test_client().get("/metrics").get_data(as_text=True))
    client = make_app(METRICS_ENABLED="true").test_client()
    issuer.mode = "error"
    assert client.get("/me", headers=user_headers).status_code == 503
    issuer.mode = "up"
    client = make_app(METRICS_ENABLED="true").test_client()
    assert client.get("/me", headers=user_headers).status_code == 200
    after = scrape(client)
    assert value(after, "dmarket_jwks_fetches_total") - value(before, "dmarket_jwks_fetches_total") == 2
    assert value(after, "dmarket_jwks_fetch_failures_total") - value(before, "dmarket_jwks_fetch_failures_total") == 1


def test_the_provider_going_down_shows_while_cached_keys_serve(make_app, issuer, user_headers):
    app = make_app(METRICS_ENABLED="true", JWKS_MIN_REFRESH_SECONDS="0")
    client = app.test_client()
    assert client.get("/me", headers=user_headers).status_code == 200
    assert value(scrape(client), "dmarket_identity_provider_up") == 1
    issuer.mode = "error"
    client.get("/health/ready")  # a probe asks the issuer again, in the background
    app.extensions["dmarket.auth"]["verifier"].keys.background.join(5)
    assert value(scrape(client), "dmarket_identity_provider_up") == 0
    assert client.get("/me", headers=user_headers).status_code == 200


@pytest.mark.slow
def test_counts_from_every_gunicorn_worker_add_up(app, settings, user_headers):
    """Two workers, each with its own counters: a scrape, whichever worker answers, sums them all."""
    with LiveServer(settings, workers=2) as closed:
        assert requests.get(f"{closed.url}/metrics", timeout=5).status_code == 404
    with LiveServer({**settings, "METRICS_ENABLED": "true"}, workers=2) as server:
        for _ in range(30):  # a new connection each: the two workers take them as they come
            assert requests.get(f"{server.url}/products", headers={"Connection": "close"}, timeout=5).status_code == 200
        assert requests.get(f"{server.url}/me", headers=user_headers, timeout=5).status_code == 200
        scraped = [samples(requests.get(f"{server.url}/metrics", timeout=5).text) for _ in range(4)]
    for each in scraped:
        assert value(each, "dmarket_http_requests_total", route="/products", method="GET", status="200") == 30
        assert value(each, "dmarket_http_requests_total", route="/me", method="GET", status="200") == 1
        assert value(each, "dmarket_http_request_duration_seconds_count", route="/products", method="GET") == 30
        assert value(each, "dmarket_jwks_fetches_total") == 1
        assert value(each, "dmarket_db_pool_connections_in_use") == 0
        assert value(each, "dmarket_build_info", version=__version__) == 1.0


def test_made_up_methods_share_one_label_value(metered):
    before = scrape(metered)
    for method in ("XQWERTY", "XQWERTZ", "BREW", "PROPFIND"):
        assert metered.open("/products", method=method).status_code == 405
    after = scrape(metered)
    methods = {dict(labels).get("method") for (name, labels) in after if name == "dmarket_http_requests_total"}
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}
    moved = value(after, "dmarket_http_requests_total", route="<unmatched>", method="other", status="405") - value(
        before, "dmarket_http_requests_total", route="<unmatched>", method="other", status="405"
    )
    assert moved == 4
