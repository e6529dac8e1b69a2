"""Bearer token verification: RS256 signatures against the issuer's cached JWKS, then claims."""

import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    JoseError,
    MissingClaimError,
    UnsupportedAlgorithmError,
)
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

from app.config import issuer_url

log = logging.getLogger(__name__)

ALLOWED_ALGORITHMS = ["RS256"]
# Auth0's default profile says "JWT" (or nothing); RFC 9068 says "at+jwt".
ALLOWED_TYPES = {None, "jwt", "at+jwt", "application/at+jwt"}
# `sub` is stored as users.user_id (255 characters); control characters and lone surrogates cannot be.
MAX_SUBJECT_LENGTH = 255
_UNSTORABLE_SUBJECT = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
# After a failed fetch, answer 503 at once for this long instead of waiting on the issuer again.
FAILURE_BACKOFF_SECONDS = 5
# How long /login and /logout wait for a check of the issuer before going by its last verdict.
ANSWER_WAIT_SECONDS = 0.25
_BOOTTIME = getattr(time, "CLOCK_BOOTTIME", None)


def elapsed() -> float:
    """Seconds on a clock that never goes back and, on Linux, keeps counting while the machine sleeps."""
    return time.clock_gettime(_BOOTTIME) if _BOOTTIME is not None else time.monotonic()


class InvalidToken(Exception):
    """The token is not acceptable; the message is safe to show the client."""


class IssuerUnavailable(Exception):
    """The issuer's keys could not be fetched and none are cached."""


def fetch_oidc_jwks(issuer: str, timeout: float) -> Callable[[], dict]:
    """A key source reading `jwks_uri` from the issuer's OpenID discovery document.

    The document must name exactly the configured issuer (OpenID Connect Discovery 4.3): with or
    without a trailing slash, as the provider writes it.
    """
    session = requests.Session()
    jwks_uri: str | None = None
    discovery = issuer_url(issuer, ".well-known/openid-configuration")

    def fetch() -> dict:
        nonlocal jwks_uri
        try:
            if jwks_uri is None:
                doc = session.get(discovery, timeout=timeout)
                doc.raise_for_status()
                meta = doc.json()
                if meta.get("issuer") != issuer:
                    raise IssuerUnavailable(
                        f"the discovery document names issuer {meta.get('issuer')!r}, AUTH0_ISSUER is {issuer!r}: "
                        "they must match exactly (trailing slash included)"
                    )
                uri = meta.get("jwks_uri")
                if not isinstance(uri, str) or not uri.startswith(("https://", "http://")):
                    raise IssuerUnavailable("discovery document has no usable jwks_uri")
                jwks_uri = uri
            response = session.get(jwks_uri, timeout=timeout)
            response.raise_for_status()
            return response.json()
        except (requests.RequestException, ValueError) as exc:
            raise IssuerUnavailable(f"{exc.__class__.__name__} fetching keys") from exc

    return fetch


@dataclass(frozen=True)
class _KeySet:
    """One fetched key set, replaced whole: its keys and its generation are always read together."""

    keys: dict[str, Any]  # kid -> key
    fingerprints: frozenset
    generation: int
    fetched_at: float  # when the fetch that brought it began: its age counts from then


class _Fetch:
    """One fetch of the key set, run in its own thread; requests that need it wait on `done`."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False
        self.overdue = False  # a request gave up waiting for it: later ones do not wait on it


class JWKSCache:
    """The issuer's public keys, never trusted longer than `max_age` while the issuer answers.

    A set is used to accept a token only while it is younger than `max_age` (counted from the
    start of the fetch that brought it). Under traffic it is refreshed in the background ahead
    of that; a request that finds it older (an idle worker's first) waits for a refetch (at most
    `timeout`) and is checked against its result. Only when that refetch fails (the issuer
    errs, or does not answer within `timeout`) does the old set keep serving, while it is younger
    than `max_age + stale_if_error`, asked again in the background every FAILURE_BACKOFF_SECONDS;
    past that every token gets IssuerUnavailable.

    One fetch at a time per process, in a thread of its own: requests that need keys (none yet,
    an unknown `kid`, a set past its age) wait for it, each at most `timeout`, and take its
    outcome; once one has given up on it, the others do not wait on it. A cached key is found
    without any lock. Refetches for unknown key ids are throttled (`min_refresh` seconds), so
    tokens with forged key ids cannot make us hammer the issuer. Only the configured source is
    ever contacted: `jku`/`x5u` headers in a token are ignored.
    """

    def __init__(
        self,
        fetch: Callable[[], dict],
        *,
        min_refresh: float = 30,
        max_age: float = 300,
        stale_if_error: float = 600,
        timeout: float = 5,
        clock: Callable[[], float] = elapsed,
        saved_at: Path | None = None,
    ):
        self._fetch = fetch
        self._min_refresh = min_refresh
        self.max_age = max_age
        self.stale_if_error = stale_if_error
        self.timeout = timeout
        # Under traffic, refreshed this long before its age runs out: a fetch taking up to `timeout`
        # still lands in time, and busy workers never wait.
        self._refresh_ahead = min(max_age / 2, timeout)
        self._clock = clock
        self._saved_at = saved_at  # a file shared by the workers: the last set any of them fetched
        self._lock = threading.Lock()  # guards starting a fetch; never held while one runs
        self._running: _Fetch | None = None
        self._set: _KeySet | None = None
        self._attempted_at = float("-inf")  # when the last fetch began
        self._answered_at = float("-inf")  # when the issuer last answered with a usable set
        self._failed_at = float("-inf")
        self.last_error: str | None = None
        self.background: threading.Thread | None = None  # the last fetch's thread (tests join it)

    @property
    def loaded(self) -> bool:
        return self._set is not None

    @property
    def generation(self) -> int:
        """Bumped when a key leaves the set (or changes): tokens verified before are verified again.

        A refresh bringing the same keys, or only new ones, keeps it (the token cache stays warm).
        """
        return self._set.generation if self._set is not None else 0

    @property
    def reachable(self) -> bool | None:
        """Whether the issuer answered the last fetch; None before any ended."""
        if self._answered_at == self._failed_at == float("-inf"):
            return None
        return self._answered_at >= self._failed_at

    def _backing_off(self) -> bool:
        return self._clock() - self._failed_at < min(FAILURE_BACKOFF_SECONDS, self._min_refresh)

    def _start_fetch(self) -> _Fetch | None:
        """The fetch in flight, or one started now; None while backing off after a failure. Never waits."""
        with self._lock:
            if self._running is not None:
                return self._running
            if self._backing_off():
                return None
            fetch = self._running = _Fetch()
            self._attempted_at = began = self._clock()
            self.background = threading.Thread(target=self._run, args=(fetch, began), name="jwks-fetch", daemon=True)
            self.background.start()
            return fetch

    def _run(self, fetch: _Fetch, began: float) -> None:
        try:
            try:
                data = self._fetch()
                keys = KeySet.import_key_set(data)
            except IssuerUnavailable as exc:
                self._failed(str(exc))
            except (JoseError, ValueError, TypeError, KeyError) as exc:
                self._failed(f"issuer returned an unusable key set ({exc.__class__.__name__})")
            else:
                self._load([k for k in keys if k.key_type == "RSA"], began)
                self._answered_at = self._clock()
                fetch.ok = True
                self._save(data, began)
        finally:
            with self._lock:
                self._running = None
            fetch.done.set()

    def _refetch(self) -> bool:
        """Fetch now, or join the fetch in flight, waiting at most `timeout`: whether it brought a set."""
        fetch = self._start_fetch()
        if fetch is None or fetch.overdue:
            return False
        if not fetch.done.wait(self.timeout):
            fetch.overdue = True
            self._failed(f"the issuer did not answer within HTTP_TIMEOUT ({self.timeout:g} s)")
            return False
        return fetch.ok

    def _failed(self, reason: str) -> None:
        self._failed_at = self._clock()
        if reason != self.last_error:
            log.warning("the issuer's signing keys could not be fetched: %s", reason)
        self.last_error = reason

    def _load(self, keys: list, began: float) -> None:
        fingerprints = frozenset((k.kid, k.thumbprint()) for k in keys)
        old = self._set
        generation = old.generation if old is not None else 0
        if old is not None and not old.fingerprints <= fingerprints:
            generation += 1
        if old is None or fingerprints != old.fingerprints:
            log.info("loaded %d signing key(s) from the issuer", len(keys))
        # Published in one assignment: whoever reads the new generation also finds the new keys,
        # so a token a removed key accepted is never remembered under it (TokenCache).
        self._set = _KeySet({k.kid: k for k in keys if k.kid}, fingerprints, generation, began)
        self.last_error = None

    def _save(self, data: dict, began: float) -> None:
        """The last set the issuer gave, on disk with when it was fetched (wall time), for workers started later."""
        if self._saved_at is None:
            return
        fetched = time.time() - (self._clock() - began)
        partial = self._saved_at.with_name(f"{self._saved_at.name}.{os.getpid()}")
        try:
            partial.parent.mkdir(parents=True, exist_ok=True)
            partial.write_text(json.dumps({"fetched_at": fetched, "jwks": data}))
            os.replace(partial, self._saved_at)
        except OSError as exc:
            log.debug("the signing keys could not be saved: %s", exc)

    def _restore(self) -> None:
        """A set another worker saved, for a worker whose first fetch failed (one recycled while the issuer
        is down): its age counts from its own fetch, so it serves only as stale-if-error would have."""
        if self._saved_at is None:
            return
        try:
            saved = json.loads(self._saved_at.read_text())
            keys = KeySet.import_key_set(saved["jwks"])
            began = self._clock() - (time.time() - float(saved["fetched_at"]))
        except (OSError, ValueError, TypeError, KeyError, JoseError):
            return
        self._load([k for k in keys if k.key_type == "RSA"], min(began, self._clock()))

    def usable(self) -> _KeySet:
        """The key set to check tokens against now; IssuerUnavailable when there is none.

        May wait for a fetch (at most `timeout`): when no set is cached, or the cached one is past
        `max_age` and the issuer has not failed since.
        """
        current = self._set
        if current is None:
            if self._refetch():
                return self._set
            self._restore()
            current = self._set
            if current is None:
                raise IssuerUnavailable(self.last_error or "issuer unreachable")
        age = self._clock() - current.fetched_at
        if age < self.max_age:
            if age >= self.max_age - self._refresh_ahead:
                self._start_fetch()
            return current
        if self._stale_if_error(current, age):
            self._start_fetch()  # the issuer failed since: keep asking it in the background (after the backoff)
            return current
        self._refetch()  # refuse-and-refetch: this request is checked against what the issuer says now
        current = self._set
        age = self._clock() - current.fetched_at
        if age < self.max_age or self._stale_if_error(current, age):
            return current
        raise IssuerUnavailable(self.last_error or "the signing keys are too old and the issuer does not answer")

    def _stale_if_error(self, current: _KeySet, age: float) -> bool:
        """Whether a set past its age may still serve: the issuer failed to refresh it, within the window."""
        refreshing_from = current.fetched_at + self.max_age - self._refresh_ahead
        failed = self._failed_at > self._answered_at and self._failed_at >= refreshing_from
        return failed and age < self.max_age + self.stale_if_error

    def usable_generation(self) -> int | None:
        """The generation of the set usable now (see `usable`); None when there is none.

        The token cache asks on every hit: a token it remembers is served only while the set that
        accepted it (or a later one with the same keys) may still accept tokens.
        """
        try:
            return self.usable().generation
        except IssuerUnavailable:
            return None

    def ready(self) -> bool:
        """Keys are cached, or can be fetched now (readiness probes warm the cache this way).

        With keys cached, a probe also asks the issuer again in the background when nobody has for
        `min_refresh` seconds, so `reachable` reports an outage even while the cached keys serve.
        """
        if self._set is not None:
            if self._clock() - self._attempted_at >= self._min_refresh:
                self._start_fetch()
            return True
        return self._refetch()

    def issuer_answers(self) -> bool:
        """Whether the issuer answers, for browser sign-in and sign-out; waits ANSWER_WAIT_SECONDS at most.

        Authlib keeps the provider's endpoints for the process's life, so without asking, a warm
        worker would send the browser to a host that is down. A verdict older than a few seconds
        is checked again by a fetch in the background; the request waits that long for it, then
        goes by the last verdict: a provider that refuses connections is seen at once, one that
        hangs by the next sign-in after `timeout`. A worker that never heard from the issuer waits
        for its first answer (at most `timeout`): it has no verdict to go by.
        """
        if self.reachable is None:
            self._refetch()
        elif self._clock() - max(self._answered_at, self._failed_at) >= min(FAILURE_BACKOFF_SECONDS, self._min_refresh):
            fetch = self._start_fetch()
            if fetch is not None:
                fetch.done.wait(ANSWER_WAIT_SECONDS)
        return bool(self.reachable)

    def key_for(self, kid: str):
        key = self.usable().keys.get(kid)
        if key is not None:
            return key
        # An unknown kid: join the fetch in flight, or start one unless one began too recently. While the
        # issuer's last answer was a failure, a key it may have added since cannot be ruled out: 503, not 401.
        if self._running is None and self._clock() - self._attempted_at < self._min_refresh:
            if self.reachable is False:
                raise IssuerUnavailable(self.last_error or "issuer unreachable")
            raise InvalidToken("the token is signed with an unknown key")
        if not self._refetch():
            raise IssuerUnavailable(self.last_error or "issuer unreachable")
        key = self.usable().keys.get(kid)  # the fetch joined may have begun long ago: its age counts too
        if key is None:
            raise InvalidToken("the token is signed with an unknown key")
        return key


class TokenVerifier:
    """Checks an access token the same way whichever issuer (Auth0 or local) signed it."""

    def __init__(self, *, keys: JWKSCache, issuer: str, audience: str, leeway: int = 30):
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self._claims = JWTClaimsRegistry(
            leeway=leeway,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": audience},
            sub={"essential": True},
            exp={"essential": True},
        )

    def _resolve_key(self, obj):
        header = obj.headers()
        if header.get("alg") not in ALLOWED_ALGORITHMS:
            raise InvalidToken("the token's algorithm is not allowed")
        typ = header.get("typ")
        if (typ.lower() if isinstance(typ, str) else typ) not in ALLOWED_TYPES:
            raise InvalidToken("the token is not an access token")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("the token has no key id")
        return self.keys.key_for(kid)

    def verify(self, token: str) -> dict[str, Any]:
        """Return the token's claims, or raise InvalidToken / IssuerUnavailable."""
        if token.count(".") != 2 or len(token) > 16_384:
            raise InvalidToken("the token is malformed")
        try:
            decoded = jwt.decode(token, self._resolve_key, algorithms=ALLOWED_ALGORITHMS)
            self._claims.validate(decoded.claims)
        except ExpiredTokenError:
            raise InvalidToken("the token has expired") from None
        except MissingClaimError as exc:
            raise InvalidToken(f"the token lacks required claims ({exc.claim})") from None
        except JoseError as exc:
            raise InvalidToken(_describe(exc)) from None
        except (ValueError, TypeError, UnicodeError):
            raise InvalidToken("the token is malformed") from None
        sub = decoded.claims.get("sub")
        if not isinstance(sub, str) or not sub.strip():
            raise InvalidToken("the token lacks required claims (sub)")
        if len(sub) > MAX_SUBJECT_LENGTH or _UNSTORABLE_SUBJECT.search(sub):
            # It is the account's key: refused, never cut or cleaned into someone else's.
            raise InvalidToken("the token's sub claim is not accepted")
        return decoded.claims


def _describe(exc: JoseError) -> str:
    """A short reason for the client; never contains a double quote (it goes in a header)."""
    if isinstance(exc, BadSignatureError):
        return "the token's signature is invalid"
    if isinstance(exc, UnsupportedAlgorithmError):
        return "the token's algorithm is not allowed"
    if isinstance(exc, InvalidClaimError):
        if exc.claim in ("nbf", "iat") and "NumericDate" not in str(exc.description):
            # A time, but ahead of ours by more than JWT_LEEWAY (both claims get that leeway, as exp does).
            return f"the token is not valid yet: its {exc.claim} is ahead of this server's clock beyond JWT_LEEWAY"
        return f"the token's {exc.claim} claim is not accepted"
    return "the token is malformed"
