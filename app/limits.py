"""Rate limits per client: the signed-in user when known, else the client's IP address.

Counters live in RATELIMIT_STORAGE_URI (memory per process, or Redis shared by every worker
and host), kept by the `limits` library's fixed-window strategy. The budgets are parsed once
per app and checked by one before-request hook: a request costs one counter increment per
budget that applies (two for a write), not a per-request resolution of decorated limits
(Flask-Limiter's generic machinery cost ~0.25 ms per request). It runs after
authentication, so a request that carries valid credentials is counted against its user,
wherever it comes from.
"""

import logging
import threading
import time
from dataclasses import dataclass
from types import SimpleNamespace

from flask import Blueprint, Flask, g, request
from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from app.errors import error_response

log = logging.getLogger(__name__)

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# After the shared storage failed, count in memory for this long before trying it again.
STORAGE_RETRY_SECONDS = 10


@dataclass(frozen=True)
class Budget:
    """One parsed limit; `scope` names its counter (every route of a scope shares it)."""

    item: RateLimitItem
    scope: str

    @property
    def description(self) -> str:
        return str(self.item)  # e.g. "60 per 1 minute"


class RateLimitExceeded(Exception):
    def __init__(self, budget: Budget, reset_at: float):
        super().__init__(budget.description)
        self.budget = budget
        self.reset_at = reset_at


class MemoryWindows:
    """Fixed-window counters in this process (memory://), with `FixedWindowRateLimiter`'s interface.

    `limits`' MemoryStorage starts a timer thread every 10 ms to expire keys: at a thousand
    requests a second that is a thread start every few requests. Here expired windows are
    dropped lazily instead, when the table has grown.
    """

    PURGE_AT = 10_000

    def __init__(self):
        self._windows: dict[str, list] = {}  # key -> [window end (epoch seconds), count]
        self._lock = threading.Lock()

    def hit(self, item: RateLimitItem, *identifiers: str, cost: int = 1) -> bool:
        key, now = item.key_for(*identifiers), time.time()
        with self._lock:
            window = self._windows.get(key)
            if window is None or window[0] <= now:
                if len(self._windows) >= self.PURGE_AT:
                    self._windows = {k: w for k, w in self._windows.items() if w[0] > now}
                window = self._windows[key] = [now + item.get_expiry(), 0]
            window[1] += cost
            return window[1] <= item.amount

    def get_window_stats(self, item: RateLimitItem, *identifiers: str):
        window = self._windows.get(item.key_for(*identifiers))
        if window is None or window[0] <= time.time():
            return SimpleNamespace(reset_time=time.time() + item.get_expiry(), remaining=item.amount)
        return SimpleNamespace(reset_time=window[0], remaining=max(0, item.amount - window[1]))


def client_key() -> str:
    identity = g.get("identity")
    if identity is not None:
        return f"user:{identity.user.user_id}"
    return f"ip:{request.remote_addr}"


def _login_key() -> str:
    return f"ip:{request.remote_addr}"


class RateLimiter:
    """Every budget of the app, parsed once; `check()` spends one unit of each that applies."""

    def __init__(self, app: Flask):
        cfg = app.config
        self.enabled = cfg["RATELIMIT_ENABLED"]
        self.prefix = cfg["RATELIMIT_KEY_PREFIX"]
        self.default = [Budget(item, "all") for item in parse_many(cfg["RATELIMIT_DEFAULT"])]
        self.writes = [Budget(item, "writes") for item in parse_many(cfg["RATELIMIT_WRITES"])]
        self.login = [Budget(item, "login") for item in parse_many(cfg["RATELIMIT_LOGIN"])]
        self.write_blueprints: set[str] = set()
        self.login_blueprints: set[str] = set()
        self.exempt_blueprints: set[str] = set()
        uri = cfg["RATELIMIT_STORAGE_URI"]
        self._memory = MemoryWindows()
        self._shared = self._memory if uri.startswith("memory://") else FixedWindowRateLimiter(storage_from_string(uri))
        self._shared_failed_at = float("-inf")

    def exempt(self, bp: Blueprint) -> None:
        self.exempt_blueprints.add(bp.name)

    def _strategy(self):
        if time.monotonic() - self._shared_failed_at < STORAGE_RETRY_SECONDS:
            return self._memory
        return self._shared

    def _hit(self, budget: Budget, key: str) -> bool:
        strategy = self._strategy()
        try:
            return strategy.hit(budget.item, self.prefix, key, budget.scope)
        except Exception:  # noqa: BLE001 (any storage error): limits protect the service, they must not take it down
            if strategy is self._memory:
                raise
            log.warning("rate limit storage unreachable: counting in memory for %ss", STORAGE_RETRY_SECONDS)
            self._shared_failed_at = time.monotonic()
            return self._memory.hit(budget.item, self.prefix, key, budget.scope)

    def check(self) -> None:
        """The before-request hook: 429 (RateLimitExceeded) once a budget of this client is spent."""
        blueprint = request.blueprint
        if not self.enabled or request.endpoint is None or blueprint in self.exempt_blueprints:
            return
        key = client_key()
        budgets = self.default
        if blueprint in self.write_blueprints and request.method in WRITE_METHODS:
            budgets = self.writes + budgets
        elif blueprint in self.login_blueprints:
            self._spend(self.login, _login_key())
        self._spend(budgets, key)

    def _spend(self, budgets: list[Budget], key: str) -> None:
        for budget in budgets:
            if not self._hit(budget, key):
                stats = self._strategy().get_window_stats(budget.item, self.prefix, key, budget.scope)
                raise RateLimitExceeded(budget, stats.reset_time)


def init_app(app: Flask) -> RateLimiter:
    limiter = RateLimiter(app)
    app.extensions["dmarket.limiter"] = limiter
    app.before_request(limiter.check)
    app.register_error_handler(RateLimitExceeded, _rate_limited)
    return limiter


def _rate_limited(exc: RateLimitExceeded):
    headers = {
        "Retry-After": str(max(1, int(exc.reset_at - time.time()))),
        "X-RateLimit-Limit": str(exc.budget.item.amount),
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(int(exc.reset_at)),
    }
    return error_response(
        429, "rate_limited", f"Too many requests: the limit is {exc.budget.description}.", headers=headers
    )


def limit_writes(limiter: RateLimiter, *blueprints: Blueprint) -> None:
    """POST/PUT/PATCH/DELETE on these blueprints also spend the client's RATELIMIT_WRITES budget."""
    limiter.write_blueprints.update(bp.name for bp in blueprints)


def limit_sign_in(limiter: RateLimiter, bp: Blueprint) -> None:
    """Sign-in routes also spend a RATELIMIT_LOGIN budget per IP address."""
    limiter.login_blueprints.add(bp.name)
