"""The assembled stack for tests: the image as boot.sh runs it (tests/shipped.py), compose's front door
before two instances, and a TLS load balancer before that, all real nginx (tests/proxies.py).

Clients connect from addresses of their own on loopback (127.0.0.N), so "the true client" is never
the proxies' 127.0.0.1. The stacks are module-scoped fixtures (conftest.py beside this file): each
test module builds its own.
"""

import http.client
import json
import ssl
import threading
import time
import uuid

import pytest

from tests.conftest import service_missing
from tests.databases import postgres_base_url
from tests.proxies import front_door, nginx_missing, tls_balancer
from tests.shipped import ShippedServer, shipped_env

SERVING_LAYERS_ONLY = [
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

    def connect(self, source: str) -> http.client.HTTPConnection:
        """A connection from `source` (127.0.0.N) to what clients reach, over TLS (unverified) behind the balancer."""
        if not self.tls:
            return http.client.HTTPConnection("127.0.0.1", self.port, timeout=20, source_address=(source, 0))
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        return http.client.HTTPSConnection(
            "127.0.0.1", self.port, timeout=20, context=context, source_address=(source, 0)
        )

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
    conn = stack.connect(source)
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


def build(issuer, tmp_path_factory, redis_url, *, door: bool, balancer: bool, instances: int = 2) -> Stack:
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


def header_bytes(headers) -> int:
    return sum(len(name) + len(value) + 4 for name, value in headers)
