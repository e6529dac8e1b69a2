"""Scaling out: two gunicorn servers (two workers each) share one PostgreSQL database and one Redis.

Whatever one instance does, the other sees: products, ETags, browser sessions, rate-limit counts.
The servers are real processes started and stopped by the test, as a load balancer's backends.
"""

import uuid
from urllib.parse import urlsplit

import pytest
import redis
import requests
from flask_migrate import upgrade

from app import create_app
from app.extensions import db
from tests.databases import postgres_schema
from tests.factories import bearer
from tests.live import LiveServer, free_port

pytestmark = pytest.mark.slow
REDIS_URL = "redis://127.0.0.1:6379/0"
PRODUCT = {"name": "Lamp", "description": "A desk lamp", "price": "19.99", "quantity": 3}


@pytest.fixture
def cluster(issuer, settings, postgres_url, redis_url):
    """Two instances behind an imaginary load balancer; yields their base URLs."""
    issuer.reset()
    prefix = f"dmarket-scale-{uuid.uuid4().hex[:8]}"
    with postgres_schema(postgres_url) as database_url:
        env = {
            **settings,
            "DATABASE_URL": database_url,  # PostgreSQL even when the suite runs on SQLite
            "RATELIMIT_STORAGE_URI": REDIS_URL,
            "RATELIMIT_KEY_PREFIX": prefix,
            "RATELIMIT_WRITES": "5 per minute",
        }
        migrator = create_app(env)
        with migrator.app_context():
            upgrade()
            db.engine.dispose()
        # The load balancer's address is the public one: both instances build their URLs from it.
        port = free_port()
        env["PUBLIC_URL"] = f"http://127.0.0.1:{port}"
        with LiveServer(env, workers=2, port=port) as first, LiveServer(env, workers=2) as second:
            yield first.url, second.url
    store = redis.Redis.from_url(REDIS_URL)
    for key in store.scan_iter(f"*{prefix}*"):
        store.delete(key)
    store.close()


def test_a_product_lives_on_every_instance(cluster, issuer):
    first, second = cluster
    alice = bearer(issuer.token("auth0|alice", email="alice@example.com"))
    created = requests.post(f"{first}/products/create", json=PRODUCT, headers=alice, timeout=10)
    assert created.status_code == 201
    product_id = created.json()["id"]

    read = requests.get(f"{second}/products/{product_id}", timeout=10)
    assert read.status_code == 200 and read.json()["name"] == "Lamp"
    etag = read.headers["ETag"]

    updated = requests.put(
        f"{second}/products/{product_id}/update",
        json={"quantity": 7},
        headers={**alice, "If-Match": etag},
        timeout=10,
    )
    assert updated.status_code == 200 and updated.json()["quantity"] == 7
    stale = requests.put(
        f"{first}/products/{product_id}/update", json={"quantity": 1}, headers={**alice, "If-Match": etag}, timeout=10
    )
    assert stale.status_code == 412  # the first instance knows the second one's write

    deleted = requests.delete(f"{first}/products/{product_id}/delete", headers=alice, timeout=10)
    assert deleted.status_code == 200
    assert requests.get(f"{second}/products/{product_id}", timeout=10).status_code == 404


def test_a_session_made_on_one_instance_works_on_the_other(cluster):
    first, second = cluster
    browser = requests.Session()
    to_provider = browser.get(f"{first}/login", allow_redirects=False, timeout=10)
    assert to_provider.status_code == 302
    back = requests.get(to_provider.headers["Location"], allow_redirects=False, timeout=10).headers["Location"]
    assert urlsplit(back).netloc == urlsplit(first).netloc
    signed_in = browser.get(back, allow_redirects=False, timeout=10)
    assert signed_in.status_code == 303 and "dmarket_session" in browser.cookies

    me = browser.get(f"{second}/me", timeout=10)
    assert me.status_code == 200 and me.json()["user_id"] == "auth0|alice"
    created = browser.post(
        f"{second}/products/create", json=PRODUCT, headers={"Origin": "http://localhost:3000"}, timeout=10
    )
    assert created.status_code == 201


def test_the_rate_limit_is_shared(cluster, issuer):
    first, second = cluster
    carol = bearer(issuer.token("auth0|carol", email="carol@example.com"))
    statuses = [
        requests.post(f"{url}/products/create", json=PRODUCT, headers=carol, timeout=10).status_code
        for url in (first, second, first, second, first, second)
    ]
    assert statuses == [201, 201, 201, 201, 201, 429]
