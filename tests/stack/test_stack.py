"""The assembled stack under attack: the image (boot.sh, its nginx, gunicorn), compose's front door
(nginx/front-door.conf) before two instances, and a TLS load balancer before that, all real nginx.

Clients connect from addresses of their own on loopback (127.0.0.N), so "the true client" is
never the proxies' 127.0.0.1. While one client attacks, another polls through the front door: it
must never see an error. SQLite pass only (they test the serving layers, not the database).
"""

import json
import signal
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import pytest

from tests.factories import bearer
from tests.issuer import new_key
from tests.stack.harness import ASTRAL, RESPONSE_HEADER_BUDGET, SERVING_LAYERS_ONLY, Poller, header_bytes, send

pytestmark = SERVING_LAYERS_ONLY


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
