"""Rate limits per client: the signed-in user when known, else the client's IP address.

Counters live in RATELIMIT_STORAGE_URI (memory per process, or Redis shared by every worker
and host) and are counted with the `limits` package: its fixed-window strategy and its
storages, the engine Flask-Limiter runs on. Flask-Limiter itself is not used: it resolves
each request's limits anew from its decorator and blueprint registries, which measured
~220 us a request (as much as the whole rest of a `GET /products/{id}`). The budgets here
are three, parsed once at start-up; picking a request's is a few set lookups.

The check is the first before-request hook after the request id, so every request is
counted, refused ones included (a bad token, no credentials, no rights, an unknown route or
method): a request whose route needs credentials and carries valid ones is counted against
its user, wherever it comes from; every other request against its IP address. Signed-in
requests also spend their address's ceiling (RATELIMIT_PER_ADDRESS, generous enough for an
office behind one NAT), so many accounts from one address do not add up to many budgets.
"""

import logging
import time

from flask import Blueprint, Flask, current_app, request
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import FixedWindowRateLimiter

from app import metrics
from app.auth.decorators import identify_quietly
from app.errors import ApiError

log = logging.getLogger(__name__)
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# After the shared storage failed, how long to count in memory before trying it again.
STORAGE_RETRY_SECONDS = 5


class RateLimited(ApiError):
    status, code = 429, "rate_limited"


class ProcessCounters(MemoryStorage):
    """`limits`' in-memory storage (memory://) without its expiry thread.

    MemoryStorage starts a new thread every 10 ms while any counter exists, to drop expired
    ones: under load ~100 thread starts a second per worker, each blocking the request that
    starts it (8% of a GET /products in-process). Here an expired counter is dropped when it
    is read (as MemoryStorage does too), and all expired ones at most once a second, inline.
    """

    SWEEP_SECONDS = 1.0

    def __init__(self):
        super().__init__()
        self.timer.cancel()
        self._next_sweep = 0.0

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        now = time.time()
        if now >= self._next_sweep:
            self._sweep(now)
        self.get(key)  # drops the counter if its window is over
        with self.locks[key]:
            self.storage[key] += amount
            if self.storage[key] == amount:
                self.expirations[key] = now + expiry
        return self.storage.get(key, 0)

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + self.SWEEP_SECONDS
        for key, expires in list(self.expirations.items()):
            if expires <= now:
                self.storage.pop(key, None)
                self.expirations.pop(key, None)
                self.locks.pop(key, None)


def shared_storage(uri: str, timeout_ms: int):
    """Redis with every call bounded: a hung server (paused, partitioned) must fail fast, not hold a worker.

    redis-py's default would wait forever for an answer, and retry a timeout three times with
    backoff of up to seconds; here one connect or read waits `timeout_ms` at most, once.
    """
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    seconds = timeout_ms / 1000
    return storage_from_string(uri, socket_timeout=seconds, socket_connect_timeout=seconds, retry=Retry(NoBackoff(), 0))


def client_key() -> str:
    identity = identify_quietly()
    if identity is not None:
        return f"user:{identity.user.user_id}"
    return f"ip:{request.remote_addr}"


class RateLimiter:
    """Every request spends the client's default budget; writes also their operation's; sign-in its IP's."""

    def __init__(self, app: Flask):
        config = app.config
        self.enabled = config["RATELIMIT_ENABLED"]
        self.prefix = config["RATELIMIT_KEY_PREFIX"]
        self.default = parse_many(config["RATELIMIT_DEFAULT"])
        self.writes = parse_many(config["RATELIMIT_WRITES"])
        self.sign_in = parse_many(config["RATELIMIT_LOGIN"])
        self.per_address = parse_many(config["RATELIMIT_PER_ADDRESS"])
        uri = config["RATELIMIT_STORAGE_URI"]
        storage = ProcessCounters() if uri.startswith("memory") else shared_storage(uri, config["REDIS_TIMEOUT_MS"])
        self.strategy = FixedWindowRateLimiter(storage)
        # Limits protect the service; an unreachable Redis must not take the API down with it.
        self.fallback = FixedWindowRateLimiter(ProcessCounters())
        self.storage_down_until = 0.0
        self.write_blueprints: set[str] = set()
        self.sign_in_blueprints: set[str] = set()
        self.exempt_blueprints: set[str] = set()
        self.exempt_views: set = set()
        self.write_scopes: dict[str, str] = {}

    def limit_writes(self, *blueprints: Blueprint) -> None:
        self.write_blueprints.update(bp.name for bp in blueprints)

    def limit_sign_in(self, bp: Blueprint) -> None:
        self.sign_in_blueprints.add(bp.name)

    def exempt(self, target) -> None:
        """Never count a blueprint's routes, or one view's (probes and scrapes come every few seconds)."""
        if isinstance(target, Blueprint):
            self.exempt_blueprints.add(target.name)
        else:
            self.exempt_views.add(target)

    def check(self) -> None:
        if not self.enabled:
            return
        blueprint = request.blueprint
        if blueprint in self.exempt_blueprints:
            return
        endpoint = request.endpoint
        if self.exempt_views and current_app.view_functions.get(endpoint) in self.exempt_views:
            return
        key = client_key()
        self._spend(self.default, key, "global")
        if key[0] == "u":  # a user's budget is theirs, but many accounts from one address share a ceiling
            self._spend(self.per_address, f"ip:{request.remote_addr}", "address")
        if blueprint in self.sign_in_blueprints:
            self._spend(self.sign_in, f"ip:{request.remote_addr}", blueprint)
        elif blueprint in self.write_blueprints and request.method in WRITE_METHODS:
            self._spend(self.writes, key, self._write_scope(endpoint))

    def _write_scope(self, endpoint: str) -> str:
        """One budget per operation: a REST alias (POST /products) shares its seed path's (POST /products/create)."""
        scope = self.write_scopes.get(endpoint)
        if scope is None:
            view = current_app.view_functions.get(endpoint)
            scope = self.write_scopes[endpoint] = f"{endpoint.partition('.')[0]}.{getattr(view, '__name__', endpoint)}"
        return scope

    def _spend(self, items: list[RateLimitItem], key: str, scope: str) -> None:
        for item in items:
            strategy = self._strategy()
            try:
                allowed = strategy.hit(item, self.prefix, key, scope)
            except Exception:  # the shared storage is down: count in this process until it is back
                log.warning("Rate limit storage unreachable: counting in memory for %ss", STORAGE_RETRY_SECONDS)
                self.storage_down_until = time.monotonic() + STORAGE_RETRY_SECONDS
                strategy = self.fallback
                allowed = strategy.hit(item, self.prefix, key, scope)
            if not allowed:
                raise self._refusal(strategy, item, key, scope)

    def _strategy(self) -> FixedWindowRateLimiter:
        if self.storage_down_until and time.monotonic() < self.storage_down_until:
            return self.fallback
        return self.strategy

    def _refusal(self, strategy: FixedWindowRateLimiter, item: RateLimitItem, key: str, scope: str) -> RateLimited:
        metrics.rate_limited()
        try:
            reset_at = strategy.get_window_stats(item, self.prefix, key, scope).reset_time
        except Exception:
            reset_at = time.time() + item.get_expiry()
        headers = {
            "Retry-After": str(max(1, int(reset_at - time.time()))),
            "X-RateLimit-Limit": str(item.amount),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int(reset_at)),
        }
        return RateLimited(f"Too many requests: the limit is {item}.", headers=headers)


def init_app(app: Flask) -> RateLimiter:
    limiter = RateLimiter(app)
    app.extensions["dmarket.limiter"] = limiter
    app.before_request(limiter.check)
    return limiter
