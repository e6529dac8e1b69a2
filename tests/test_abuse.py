"""Abusive clients against the app served as shipped: `boot.sh` with the image's FRONT_PROXY=nginx
(Debian's nginx in front, gunicorn.conf.py's sync workers behind it on a unix socket), on loopback.

Each test asserts what a normal client sees meanwhile, and the workers' memory. The issue's
figures are scaled down to keep the file within a minute or so: 150 slow connections for ~12 s
(not 70 s), Redis paused for 6 s (not 35 s), 800 distinct searches over long descriptions (not
1,600). They run in the SQLite pass only (they test the serving layers, not the database).
"""

import json
import shutil
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import service_missing
from tests.databases import postgres_base_url
from tests.factories import bearer
from tests.shipped import PrivateRedis, ShippedServer, shipped_env

pytestmark = pytest.mark.skipif(bool(postgres_base_url()), reason="serving layers only: run in the SQLite pass")
# What docs/deployment.md promises each worker stays under, whatever clients send.
WORKER_RSS_CEILING_MB = 200
# ~1,000 characters, the most a description may hold; the emoji make Python keep 4 bytes a character.
LONG = "Warm light, adjustable arm \U0001f4a1 " * 34


@pytest.fixture(scope="module")
def private_redis():
    if not shutil.which("redis-server"):
        service_missing("redis-server is not installed (apt-get install redis-server)")
    server = PrivateRedis()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def shipped(issuer, private_redis, tmp_path_factory):
    """One server for the module: metrics on, counting in the private Redis, limits out of the way."""
    if not shutil.which("nginx") and not Path("/usr/sbin/nginx").exists():
        service_missing("nginx is not installed (apt-get install nginx-light)")
    tmp = tmp_path_factory.mktemp("shipped")
    env = shipped_env(
        issuer,
        tmp,
        METRICS_ENABLED="true",
        RATELIMIT_STORAGE_URI=private_redis.url,
        RATELIMIT_DEFAULT="100000 per minute",
        RATELIMIT_WRITES="100000 per minute",
    )
    server = ShippedServer(env, tmp).start()
    yield server
    server.stop()


def timed_gets(url: str, count: int, pause: float = 0.05) -> list[tuple[int, float, str]]:
    """A normal client: `count` sequential GETs on new connections, as (status, seconds, content type)."""
    results = []
    for _ in range(count):
        started = time.monotonic()
        try:
            response = requests.get(url, timeout=10)
            results.append((response.status_code, time.monotonic() - started, response.headers["Content-Type"]))
        except requests.RequestException as exc:
            results.append((0, time.monotonic() - started, exc.__class__.__name__))
        time.sleep(pause)
    return results


class SlowClients:
    """Connections that send headers or a body a byte every 2 s, and ones that never read their answer."""

    def __init__(self, port: int, headers: int, bodies: int, readers: int, big_path: str):
        self.port, self.stop_event = port, threading.Event()
        self.trickling: list[socket.socket] = []
        self.readers: list[socket.socket] = []
        for _ in range(headers):
            sock = self._connect()
            sock.sendall(b"GET /products HTTP/1.1\r\nHost: x\r\n")
            self.trickling.append(sock)
        for _ in range(bodies):
            sock = self._connect()
            sock.sendall(b"POST /products HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
            sock.sendall(b"Content-Length: 100000\r\n\r\n{")
            self.trickling.append(sock)
        request = f"GET {big_path} HTTP/1.1\r\nHost: x\r\n\r\n".encode() * 20  # pipelined, never read
        for _ in range(readers):
            sock = self._connect(rcvbuf=4096)
            sock.sendall(request)
            self.readers.append(sock)
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        self.thread.start()

    def _connect(self, rcvbuf: int | None = None) -> socket.socket:
        sock = socket.socket()
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.connect(("127.0.0.1", self.port))
        return sock

    def _trickle(self) -> None:
        while not self.stop_event.wait(2):
            for sock in self.trickling:
                try:
                    sock.send(b"X")
                except OSError:
                    pass  # the front door gave up on it: fine

    def close(self) -> None:
        self.stop_event.set()
        self.thread.join()
        for sock in self.trickling + self.readers:
            sock.close()


def test_150_slow_connections_do_not_starve_a_normal_client(shipped):
    slow = SlowClients(shipped.port, headers=50, bodies=50, readers=50, big_path="/openapi/openapi.json")
    try:
        time.sleep(1)  # every slow connection is open and has sent what it will send at first
        results = timed_gets(f"{shipped.url}/products", 100)
    finally:
        slow.close()
    statuses = {status for status, _, _ in results}
    within_1s = sum(1 for status, seconds, _ in results if status == 200 and seconds < 1)
    assert statuses == {200}, results
    assert within_1s >= 99, sorted(seconds for _, seconds, _ in results)[-5:]
    assert all(kind == "application/json" for _, _, kind in results)
    assert max(shipped.workers()) < WORKER_RSS_CEILING_MB
    assert "WORKER TIMEOUT" not in shipped.logs()


def test_a_paused_redis_adds_under_half_a_second_and_no_probe_waits_on_it(shipped, private_redis):
    baseline = max(seconds for _, seconds, _ in timed_gets(f"{shipped.url}/products", 10))
    private_redis.process.send_signal(signal.SIGSTOP)
    try:
        probes = timed_gets(f"{shipped.url}/health", 5, pause=0) + timed_gets(f"{shipped.url}/health/ready", 5, pause=0)
        paused = timed_gets(f"{shipped.url}/products", 60, pause=0.1)  # ~6 s: every worker meets the pause
    finally:
        private_redis.process.send_signal(signal.SIGCONT)
    assert {status for status, _, _ in probes + paused} == {200}
    assert max(seconds for _, seconds, _ in probes) < 0.5
    assert max(seconds for _, seconds, _ in paused) < baseline + 0.5
    assert "Rate limit storage unreachable" in shipped.logs()
    time.sleep(5.5)  # STORAGE_RETRY_SECONDS: then counting goes back to Redis
    before = len(private_redis.keys())
    timed_gets(f"{shipped.url}/products?per_page=3", 10, pause=0)
    assert len(private_redis.keys()) >= max(before, 1)


def test_distinct_searches_over_long_descriptions_keep_workers_under_the_ceiling(shipped, issuer):
    headers = bearer(issuer.token("auth0|seller", email="seller@example.com"))
    with requests.Session() as session:
        for i in range(100):
            product = {"name": f"Lamp {i}", "description": LONG, "price": "19.99", "quantity": 1}
            assert session.post(f"{shipped.url}/products", json=product, headers=headers).status_code == 201
        before = shipped.workers()
        words = ("lamp", "warm", "light", "adjustable", "arm", "warm light", "adjustable arm", "light, adjustable")
        for i in range(800):  # distinct searches of 50-99 rows x ~4 KB: unbounded, ~50 MB more in each worker
            query = {"q": words[i % 8], "sort": ("-id", "name")[i // 8 % 2], "per_page": 50 + i // 16}
            response = session.get(f"{shipped.url}/products", params=query)
            assert response.status_code == 200 and len(response.json()) == query["per_page"], response.text[:200]
    after = shipped.workers()
    assert max(after) < WORKER_RSS_CEILING_MB, after
    assert max(after) - max(before) < 25, (before, after)


def test_made_up_methods_add_no_metric_series(shipped):
    for i in range(60):
        method = f"XQWERTY{chr(65 + i % 26)}{chr(65 + i // 26)}"  # nginx takes letters only in a method
        response = requests.request(method, f"{shipped.url}/products", timeout=5)
        assert response.status_code == 405 and response.json()["code"] == "method_not_allowed"
    scraped = requests.get(f"{shipped.url}/metrics", timeout=5)
    assert scraped.status_code == 200
    methods = {
        line.split('method="', 1)[1].split('"', 1)[0] for line in scraped.text.splitlines() if 'method="' in line
    }
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}
    assert "other" in methods


@pytest.mark.parametrize(
    ("name", "request_bytes", "status", "code"),
    [
        ("16 KB query", b"GET /products?q=" + b"a" * 16384 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
        ("12 KB header", b"GET /products HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 12288 + b"\r\n\r\n", 431, None),
        ("20 KB token", b"GET /me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + b"a" * 20480 + b"\r\n\r\n", 431, ""),
        ("5 KB query", b"GET /products?q=" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
        ("150 headers", b"GET /products HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 150 + b"\r\n", 431, None),
        ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, "bad_request"),
    ],
)
def test_errors_answered_before_the_app_are_json(shipped, name, request_bytes, status, code):
    with socket.create_connection(("127.0.0.1", shipped.port), timeout=5) as sock:
        sock.sendall(request_bytes)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
            if b"\r\n\r\n" in answer and answer.endswith((b"}", b"}\n")):
                break
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == str(status).encode(), answer[:300]
    assert b"content-type: application/json" in head.lower()
    error = json.loads(body)
    assert set(error) <= {"code", "message", "details"} and error["message"]
    assert error["code"] == (code or "headers_too_large")


def test_many_accounts_from_one_address_share_its_ceiling(issuer, private_redis, tmp_path):
    limits = {"RATELIMIT_DEFAULT": "20 per minute", "RATELIMIT_PER_ADDRESS": "30 per minute"}
    redis_ = {"RATELIMIT_STORAGE_URI": private_redis.url, "RATELIMIT_KEY_PREFIX": "office"}  # all workers count as one
    env = shipped_env(issuer, tmp_path, **limits, **redis_)
    server = ShippedServer(env, tmp_path).start()
    try:
        tokens = [bearer(issuer.token(f"auth0|office{i}", email=f"office{i}@example.com")) for i in range(10)]
        with requests.Session() as session:
            statuses = [session.get(f"{server.url}/me", headers=headers).status_code for headers in tokens * 20]
    finally:
        server.stop()
    assert statuses.count(200) == 30 and statuses.count(429) == 170  # 10 accounts x 20 would be 200
