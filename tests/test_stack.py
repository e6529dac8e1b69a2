"""The assembled stack under attack: the image (boot.sh, its nginx, gunicorn), compose's front door
(nginx/front-door.conf) before two instances, and a TLS load balancer before that, all real nginx.

Clients connect from addresses of their own on loopback (127.0.0.N), so "the true client" is
never the proxies' 127.0.0.1. While one client attacks, another polls through the front door: it
must never see an error. SQLite pass only (they test the serving layers, not the database).
"""

import http.client
import json
import signal
import socket
import ssl
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import pytest

from tests.conftest import service_missing
from tests.databases import postgres_base_url
from tests.factories import bearer
from tests.issuer import new_key
from tests.proxies import front_door, nginx_missing, tls_balancer
from tests.shipped import ShippedServer, shipped_env

pytestmark = [
    pytest.mark.skipif(bool(postgres_base_url()), reason="serving layers only: run in the SQLite pass"),
    pytest.mark.slow,
]
# The most any answer's headers may take (nginx/client-limits.conf's proxy_buffer_size is 16 KB).
RESPONSE_HEADER_BUDGET = 12 * 1024
ASTRAL = "\U0001f4a1"  # 4 bytes of UTF-8: 12 once percent-encoded


class Stack:
    """What a client reaches (`port`, over TLS or not), and the instances' and proxies' logs."""

    def __init__(self, instances, proxies, tls=False):
        self.instances, self.proxies, self.tls = instances, proxies, tls

    @property
    def port(self) -> int:
        return self.proxies[-1].port if self.proxies else self.instances[0].port

    def logs(self) -> str:
        return "".join(server.logs() for server in self.instances)

    def access_line(self, request_id: str) -> dict:
        """The app's access log line of one request (LOG_FORMAT=json), by its X-Request-ID."""
        for _ in range(50):
            for line in self.logs().splitlines():
                if request_id in line and line.startswith("{"):
                    record = json.loads(line)
                    if record.get("request_id") == request_id and "remote_addr" in record:
                        return record
            time.sleep(0.1)
        raise AssertionError(f"no access line for {request_id}")

    def stop(self) -> None:
        for proxy in reversed(self.proxies):
            proxy.stop()
        for server in self.instances:
            server.stop()


def send(stack: Stack, path: str, *, source: str, method: str = "GET", headers=None, body: bytes | None = None):
    """One request from `source` (127.0.0.N): (status, [(header, value)], body)."""
    if stack.tls:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        conn = http.client.HTTPSConnection(
            "127.0.0.1", stack.port, timeout=20, context=context, source_address=(source, 0)
        )
    else:
        conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=20, source_address=(source, 0))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.getheaders(), response.read()
    except (OSError, http.client.HTTPException) as exc:
        return 0, [], repr(exc).encode()
    finally:
        conn.close()


class Poller:
    """Another client polling GET /health through the stack while a test attacks it."""

    def __init__(self, stack: Stack, source: str = "127.0.0.2"):
        self.stack, self.source = stack, source
        self.answers: list[tuple[int, bytes]] = []
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self.stop_event.is_set():
            status, _, body = send(self.stack, "/health", source=self.source)
            self.answers.append((status, body[:200]))
            time.sleep(0.02)

    def __enter__(self) -> "Poller":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        time.sleep(0.5)  # what the attack's last request may have set off
        self.stop_event.set()
        self.thread.join()

    def failures(self) -> list:
        return [answer for answer in self.answers if answer[0] != 200]


def _instance(issuer, tmp, database: str, proxies_in_front: int, prefix: str) -> ShippedServer:
    env = shipped_env(
        issuer,
        tmp,
        DATABASE_URL=database,
        LOG_FORMAT="json",
        LOG_LEVEL="INFO",
        TRUSTED_PROXIES=str(proxies_in_front),
        RATELIMIT_STORAGE_URI="redis://127.0.0.1:6379/0",
        RATELIMIT_KEY_PREFIX=prefix,
        RATELIMIT_DEFAULT="60 per minute",
        GUNICORN_GRACEFUL_TIMEOUT="3",
        JWKS_MIN_REFRESH_SECONDS="1",  # an unknown key id asks the issuer again after 1 s, not 30
    )
    return ShippedServer(env, tmp, workers=2).start()


def _build(issuer, tmp_path_factory, redis_url, *, door: bool, balancer: bool, instances: int = 2) -> Stack:
    if nginx_missing():
        service_missing("nginx is not installed (apt-get install nginx-light)")
    database = f"sqlite:///{tmp_path_factory.mktemp('db') / 'stack.sqlite3'}"
    prefix = f"stack-{uuid.uuid4().hex}"
    proxies_in_front = int(door) + int(balancer)
    stack = Stack([], [], tls=balancer)
    try:
        for _ in range(instances):  # one after the other: the first one migrates the database
            tmp = tmp_path_factory.mktemp("instance")
            stack.instances.append(_instance(issuer, tmp, database, proxies_in_front, prefix))
        if door:
            stack.proxies.append(front_door(*(server.port for server in stack.instances)).start())
        if balancer:
            stack.proxies.append(tls_balancer(stack.proxies[-1].port).start())
    except BaseException:
        stack.stop()
        raise
    return stack


@pytest.fixture(scope="module")
def compose(issuer, tmp_path_factory, redis_url):
    """compose.yaml: the front door before api1 and api2 (TRUSTED_PROXIES=1)."""
    stack = _build(issuer, tmp_path_factory, redis_url, door=True, balancer=False)
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def balanced(issuer, tmp_path_factory, redis_url):
    """compose behind a TLS load balancer (TRUSTED_PROXIES=2, as docs/deployment.md says)."""
    stack = _build(issuer, tmp_path_factory, redis_url, door=True, balancer=True)
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def image_alone(issuer, tmp_path_factory, redis_url):
    """`docker run -p 5000:5000`: the image's nginx is the only proxy (TRUSTED_PROXIES unset)."""
    stack = _build(issuer, tmp_path_factory, redis_url, door=False, balancer=False, instances=1)
    yield stack
    stack.stop()


@pytest.fixture(params=["image_alone", "compose", "balanced"])
def topology(request) -> Stack:
    return request.getfixturevalue(request.param)


def header_bytes(headers) -> int:
    return sum(len(name) + len(value) + 4 for name, value in headers)


def crafted_queries() -> list[str]:
    bangs = "!" * 200
    astral = quote(ASTRAL * 200)
    return [
        f"/products?user_id={bangs}&user_id={bangs}&user_id={bangs}",  # the two-request outage
        f"/products?q={astral}&per_page=1",  # the longest search the API accepts
        f"/products?user_id={astral[: len(astral) // 2]}&q={astral[: len(astral) // 3]}&per_page=1",  # within 4 KB
        "/products?" + "&".join([f"q={astral}", f"user_id={astral}"] * 20) + "&sort=name&sort=-id&per_page=1",
        f"/products?user_id={astral}&page=2&per_page=1&page=3&per_page=2",
        "/products?" + "&".join(f"x{i}={bangs}" for i in range(15)),  # unknown parameters: 422
    ]


def test_crafted_queries_never_cost_another_client_an_answer(compose):
    with Poller(compose) as poller:
        for _ in range(3):
            for path in crafted_queries():
                status, headers, body = send(compose, path, source="127.0.0.10")
                assert status in (200, 414, 422), (path[:80], status, body[:200])  # 414: gunicorn's 4 KB line
                assert header_bytes(headers) < RESPONSE_HEADER_BUDGET
                assert json.loads(body) is not None
    assert len(poller.answers) > 20 and poller.failures() == []


def test_errors_the_app_chooses_to_answer_eject_no_instance(compose, issuer):
    """A 503 the API gives on purpose (the provider down, a token's key unknown) is an answer, not a failure."""
    unknown_key = bearer(issuer.token("auth0|mallory", key=new_key()))
    time.sleep(1.1)  # JWKS_MIN_REFRESH_SECONDS: the unknown key id makes every worker ask the issuer
    issuer.mode = "error"
    try:
        with Poller(compose) as poller:
            answers = [send(compose, "/me", source="127.0.0.11", headers=unknown_key) for _ in range(8)]
    finally:
        issuer.mode = "up"
    assert {status for status, _, _ in answers} == {503}
    assert {json.loads(body)["code"] for _, _, body in answers} == {"issuer_unavailable"}
    assert len(poller.answers) > 20 and poller.failures() == []


@pytest.mark.parametrize(
    "forwarded",
    [
        {},
        {"X-Forwarded-For": "203.0.113.9"},  # spoofed
        {"X-Forwarded-For": '"x'},  # a stray quote (Werkzeug's list parser gives up on it)
        {"X-Forwarded-For": "203.0.113.9, 198.51.100.7, 192.0.2.1"},  # stacked
        {"X-Forwarded-For": "unknown, , garbage"},
        {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"},
    ],
    ids=["none", "spoofed", "stray-quote", "stacked", "garbage", "spoofed-https"],
)
def test_the_app_sees_the_true_client_in_every_topology(topology, forwarded):
    request_id = uuid.uuid4().hex
    status, headers, _ = send(
        topology, "/products?per_page=1", source="127.0.0.12", headers={"X-Request-ID": request_id, **forwarded}
    )
    assert status == 200
    assert topology.access_line(request_id)["remote_addr"] == "127.0.0.12"
    hsts = any(name.lower() == "strict-transport-security" for name, _ in headers)
    assert hsts is topology.tls  # HTTPS only where the client really used it


def test_a_client_spoofing_addresses_is_limited_and_others_are_not(balanced):
    statuses = [
        send(balanced, "/products?per_page=1", source="127.0.0.13", headers={"X-Forwarded-For": f"198.51.100.{i}"})[0]
        for i in range(70)
    ]
    assert statuses.count(200) == 60 and statuses.count(429) == 10  # RATELIMIT_DEFAULT: 60 per minute
    assert send(balanced, "/products?per_page=1", source="127.0.0.14")[0] == 200


def test_behind_the_tls_balancer_the_sign_in_cookie_stays_secure(balanced):
    status, headers, _ = send(balanced, "/login", source="127.0.0.15")
    assert status == 302
    cookies = [value for name, value in headers if name.lower() == "set-cookie"]
    assert cookies and all("Secure" in cookie for cookie in cookies)


def _post_products(stack, *, source, body: bytes, headers: dict, count: int = 48) -> list[int]:
    """Without the app reading what it refused, ~1 in 6 of these got nginx's 502 (a broken pipe)."""

    def one(_):
        return send(stack, "/products", source=source, method="POST", body=body, headers=headers)[0]

    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(one, range(count)))


@pytest.mark.parametrize(
    ("case", "size", "content_type", "signed_in", "status"),
    [
        ("no token", 1_040_000, "application/json", False, 401),  # just under the proxies' 1 MB
        ("too large", 1_040_000, "application/json", True, 413),
        ("wrong type", 200_000, "text/plain", True, 415),
    ],
)
@pytest.mark.parametrize("where", ["image_alone", "compose"])
def test_large_bodies_refused_before_reading_get_the_apps_answer(
    request, where, issuer, case, size, content_type, signed_in, status
):
    stack = request.getfixturevalue(where)
    headers = {"Content-Type": content_type}
    if signed_in:
        headers.update(bearer(issuer.token(f"auth0|uploader-{where}-{status}", email="uploader@example.com")))
    body = b'{"name": "' + b"a" * size + b'"}'
    with Poller(stack) as poller:
        statuses = _post_products(
            stack, source=f"127.0.{1 if where == 'compose' else 2}.{status - 300}", body=body, headers=headers
        )
    assert set(statuses) == {status}, statuses
    assert poller.failures() == []


def test_a_body_past_the_proxy_limit_is_the_proxys_json_413(compose):
    status, _, body = send(compose, "/products", source="127.0.0.17", method="POST", body=b"a" * 1_100_000)
    assert status == 413 and json.loads(body)["code"] == "payload_too_large"
    for _ in range(50):  # nginx writes the line once the connection is done with
        if '"remote_addr":"127.0.0.17"' in compose.proxies[-1].logs():
            break
        time.sleep(0.1)
    line = next(
        line for line in compose.proxies[-1].logs().splitlines() if line.startswith("{") and "127.0.0.17" in line
    )
    assert json.loads(line)["status"] == 413  # the front door logs whom it refused


RAW_REQUESTS = {
    "TRACE": (b"TRACE /products HTTP/1.1\r\nHost: x\r\n\r\n", 405, "method_not_allowed"),
    "gzip transfer coding": (
        b"POST /products HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
        501,
        "not_implemented",
    ),
    "HTTP/2.0 request line": (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505, "http_version_not_supported"),
}


@pytest.mark.parametrize("name", list(RAW_REQUESTS))
@pytest.mark.parametrize("where", ["image_alone", "compose"])
def test_every_error_nginx_answers_is_json(request, where, name):
    stack = request.getfixturevalue(where)
    raw, status, code = RAW_REQUESTS[name]
    with socket.create_connection(("127.0.0.1", stack.port), timeout=5) as sock:
        sock.sendall(raw)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == str(status).encode(), answer[:300]
    assert b"content-type: application/json" in head.lower()
    assert json.loads(body)["code"] == code


def test_an_instance_whose_gunicorn_is_gone_is_left_out_without_an_error(compose):
    """Last in the module: it stops api1's gunicorn, its nginx still up (a container stopping)."""
    gone = compose.instances[0]
    gone.process.send_signal(signal.SIGTERM)  # gunicorn closes its socket at once, then drains
    time.sleep(0.2)
    with Poller(compose) as poller:
        time.sleep(3)
    assert len(poller.answers) > 50 and poller.failures() == []


def test_the_image_alone_answers_json_502_while_its_gunicorn_is_gone(image_alone):
    """Last too: without a front door a client gets the JSON 502; only the front door's marker gets a close."""
    image_alone.instances[0].process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    status, _, body = send(image_alone, "/products", source="127.0.0.18")
    assert status == 502 and json.loads(body)["code"] == "bad_gateway"
    status, _, body = send(image_alone, "/products", source="127.0.0.18", headers={"X-DMarket-Front-Door": "1"})
    assert status == 0 and b"RemoteDisconnected" in body
