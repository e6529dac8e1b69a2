"""Rate limits: per signed-in user for writes, per IP otherwise; shared through Redis when configured."""

import socket
import threading
import time
import uuid

import pytest
import redis
from limits import parse
from limits.strategies import FixedWindowRateLimiter

from app.limits import ProcessCounters
from tests.factories import bearer

REDIS_URL = "redis://127.0.0.1:6379/0"
PRODUCT = {"name": "Lamp", "description": "A desk lamp", "price": "19.99", "quantity": 1}


@pytest.fixture
def redis_prefix(redis_url):
    """A key prefix of this test's own in the shared Redis (skipped when none runs), removed afterwards."""
    prefix = f"dmarket-test-{uuid.uuid4().hex[:12]}"
    yield prefix
    server = redis.Redis.from_url(REDIS_URL)
    for key in server.scan_iter(f"*{prefix}*"):
        server.delete(key)
    server.close()


def create(client, headers):
    return client.post("/products/create", json=PRODUCT, headers=headers)


def count_products(app) -> int:
    from app.extensions import db
    from app.models import Product

    with app.app_context():
        return db.session.query(Product).count()


def test_writes_over_the_limit_get_429_json_with_retry_after(make_app, user_headers):
    app = make_app(RATELIMIT_WRITES="2 per minute")
    client = app.test_client()
    assert [create(client, user_headers).status_code for _ in range(2)] == [201, 201]
    response = create(client, user_headers)
    assert response.status_code == 429
    assert response.json["code"] == "rate_limited"
    assert "2 per 1 minute" in response.json["message"]
    assert 0 < int(response.headers["Retry-After"]) <= 60
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert count_products(app) == 2  # the refused write wrote nothing


def test_each_user_has_a_budget_of_their_own(make_app, user_headers, other_headers):
    client = make_app(RATELIMIT_WRITES="1 per minute").test_client()
    assert create(client, user_headers).status_code == 201
    assert create(client, user_headers).status_code == 429
    assert create(client, other_headers).status_code == 201


def test_reads_do_not_spend_the_write_budget(make_app, user_headers):
    client = make_app(RATELIMIT_WRITES="1 per minute").test_client()
    for _ in range(5):
        assert client.get("/products", headers=user_headers).status_code == 200
    assert create(client, user_headers).status_code == 201


def test_anonymous_clients_are_counted_by_ip(make_app):
    client = make_app(RATELIMIT_DEFAULT="2 per minute").test_client()
    ok = {"REMOTE_ADDR": "203.0.113.1"}
    assert [client.get("/products", environ_base=ok).status_code for _ in range(3)] == [200, 200, 429]
    assert client.get("/products", environ_base={"REMOTE_ADDR": "203.0.113.2"}).status_code == 200


def test_forwarded_for_counts_only_behind_a_trusted_proxy(make_app):
    trusting = make_app(RATELIMIT_DEFAULT="1 per minute", TRUSTED_PROXIES="1").test_client()
    for client_ip in ("198.51.100.1", "198.51.100.2"):
        assert trusting.get("/products", headers={"X-Forwarded-For": client_ip}).status_code == 200
    naive = make_app(RATELIMIT_DEFAULT="1 per minute").test_client()
    statuses = [naive.get("/products", headers={"X-Forwarded-For": ip}).status_code for ip in ("1.1.1.1", "2.2.2.2")]
    assert statuses == [200, 429]  # a client cannot mint itself new budgets by forging the header


def test_limits_can_be_switched_off(make_app, user_headers):
    client = make_app(RATELIMIT_ENABLED="false", RATELIMIT_WRITES="1 per minute").test_client()
    assert [create(client, user_headers).status_code for _ in range(3)] == [201, 201, 201]


def test_redis_shares_the_count_between_instances(make_app, user_headers, redis_prefix):
    settings = {"RATELIMIT_STORAGE_URI": REDIS_URL, "RATELIMIT_KEY_PREFIX": redis_prefix, "RATELIMIT_WRITES": "3/hour"}
    first, second = make_app(**settings).test_client(), make_app(**settings).test_client()
    statuses = [create(client, user_headers).status_code for client in (first, second, first, second)]
    assert statuses == [201, 201, 201, 429]
    assert any(redis.Redis.from_url(REDIS_URL).scan_iter(f"*{redis_prefix}*"))


def test_an_unreachable_redis_does_not_take_the_api_down(make_app, issuer):
    client = make_app(RATELIMIT_STORAGE_URI="redis://127.0.0.1:1/0", RATELIMIT_WRITES="1 per minute").test_client()
    headers = bearer(issuer.token("auth0|carol", email="carol@example.com"))
    assert create(client, headers).status_code == 201
    assert create(client, headers).status_code == 429  # counted in memory meanwhile


def _refused_requests(issuer, user_headers):
    """Each kind of request the review found was never counted, as (method, path, headers, its own status)."""
    unknown_kid = issuer.token("auth0|alice", header={"kid": "no-such-key"})
    return {
        "bad token": ("GET", "/me", bearer("not.a.token"), 401),
        "unknown key id": ("GET", "/me", bearer(unknown_kid), 401),
        "no credentials": ("GET", "/me", {}, 401),
        "no admin rights": ("GET", "/admin/users", user_headers, 403),
        "unknown route": ("GET", "/no/such/route", {}, 404),
        "wrong method": ("PATCH", "/products", {}, 405),
    }


@pytest.mark.parametrize("kind", ["bad token", "unknown key id", "no credentials", "unknown route", "wrong method"])
def test_refused_requests_count_against_the_ip(make_app, issuer, user_headers, kind):
    client = make_app(RATELIMIT_DEFAULT="20 per minute").test_client()
    method, path, headers, status = _refused_requests(issuer, user_headers)[kind]
    ip = {"REMOTE_ADDR": "203.0.113.7"}
    statuses = [client.open(path, method=method, headers=headers, environ_base=ip).status_code for _ in range(60)]
    assert statuses == [status] * 20 + [429] * 40
    refused = client.open(path, method=method, headers=headers, environ_base=ip)
    assert refused.json["code"] == "rate_limited"
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    # The flood spent its own IP's budget: another client, and a signed-in user on the same IP, still get through.
    assert client.get("/products", environ_base={"REMOTE_ADDR": "203.0.113.8"}).status_code == 200
    assert client.get("/me", headers=user_headers, environ_base=ip).status_code == 200


def test_refused_requests_of_a_signed_in_user_count_against_that_user(make_app, issuer, user_headers, other_headers):
    client = make_app(RATELIMIT_DEFAULT="20 per minute").test_client()
    method, path, headers, status = _refused_requests(issuer, user_headers)["no admin rights"]
    statuses = [client.open(path, method=method, headers=headers).status_code for _ in range(60)]
    assert statuses == [status] * 20 + [429] * 40
    assert client.get("/me", headers=user_headers).status_code == 429  # the user's budget is spent, wherever
    assert client.get("/me", headers=other_headers).status_code == 200
    assert client.get("/products").status_code == 200  # anonymous reads from the same IP have their own


def test_in_memory_counters_expire_without_a_thread():
    """memory:// counts in this process; expired windows are dropped inline, no thread per 10 ms."""
    counters = ProcessCounters()
    limiter = FixedWindowRateLimiter(counters)
    one_per_second = parse("1/second")
    threads = threading.active_count()
    assert [limiter.hit(one_per_second, "ip:1") for _ in range(2)] == [True, False]
    assert limiter.hit(one_per_second, "ip:2")
    assert threading.active_count() == threads  # no expiry thread started
    time.sleep(1.1)
    assert limiter.hit(one_per_second, "ip:1")  # a new window; the sweep dropped ip:2's old one
    assert len(counters.storage) == 1


def test_many_accounts_from_one_address_share_its_ceiling(make_app, issuer):
    client = make_app(RATELIMIT_DEFAULT="3 per minute", RATELIMIT_PER_ADDRESS="5 per minute").test_client()
    office, home = {"REMOTE_ADDR": "198.51.100.7"}, {"REMOTE_ADDR": "198.51.100.8"}
    tokens = [bearer(issuer.token(f"auth0|nat{i}", email=f"nat{i}@example.com")) for i in range(4)]
    statuses = [client.get("/me", headers=headers, environ_base=office).status_code for headers in tokens * 2]
    assert statuses == [200] * 5 + [429] * 3  # 4 accounts x 3 would be 12; the address allows 5
    refused = client.get("/me", headers=tokens[0], environ_base=office)
    assert refused.status_code == 429 and refused.json["code"] == "rate_limited"
    assert refused.headers["X-RateLimit-Limit"] == "5"
    assert client.get("/me", headers=tokens[3], environ_base=home).status_code == 200  # another address: its own


def test_a_redis_that_never_answers_counts_as_down_within_its_timeout(make_app):
    with socket.socket() as silent:  # accepts connections (the kernel does), never answers: a paused Redis
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        uri = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        app = make_app(RATELIMIT_STORAGE_URI=uri, REDIS_TIMEOUT_MS="100")
        started = time.monotonic()
        assert app.test_client().get("/products").status_code == 200
        took = time.monotonic() - started
    assert 0.1 <= took < 0.5  # one wait of 100 ms, no retries with backoff
    # ...after which it is counted in memory for a while, without asking Redis again.
    assert app.extensions["dmarket.limiter"].storage_down_until > time.monotonic()
