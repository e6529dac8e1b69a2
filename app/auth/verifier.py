"""Bearer token verification: RS256 signatures against the issuer's cached JWKS, then claims."""

import logging
import re
import threading
import time
from collections.abc import Callable
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


class JWKSCache:
    """The issuer's public keys: fetched lazily, refreshed when old, refetched for an unknown `kid`.

    A set older than `max_age` is refreshed in the background (one fetch at a time per process)
    while requests go on with it, so a key the issuer stopped publishing (revoked) is refused
    within `max_age` plus one fetch; if the issuer is down, the old set keeps serving.
    Refetches for unknown key ids are throttled (`min_refresh` seconds), so tokens with forged
    key ids cannot make us hammer the issuer. Only the configured source is ever contacted:
    `jku`/`x5u` headers in a token are ignored. A cached key is found without any lock: a
    fetch (up to HTTP_TIMEOUT while the issuer hangs) holds `_fetching`, which only requests
    that need a fetch ever wait on, and at most once each.
    """

    def __init__(self, fetch: Callable[[], dict], min_refresh: float = 30, max_age: float = 300, clock=time.monotonic):
        self._fetch = fetch
        self._min_refresh = min_refresh
        self.max_age = max_age
        self._clock = clock
        self._fetching = threading.Lock()
        self._keys: dict[str, Any] | None = None  # kid -> key; replaced whole, never mutated: read unlocked
        self._fingerprints: frozenset = frozenset()
        # Bumped when a key leaves the set (or changes): tokens verified before are verified again.
        # A refresh bringing the same keys, or only new ones, keeps it (the token cache stays warm).
        self.generation = 0
        self._fetched_at = float("-inf")
        self._failed_at = float("-inf")
        self._attempts = 0  # fetches tried so far: a waiter sees whether one ended while it waited
        self.last_error: str | None = None
        self.background: threading.Thread | None = None  # the last background refresh (tests join it)

    @property
    def loaded(self) -> bool:
        return self._keys is not None

    @property
    def reachable(self) -> bool | None:
        """Whether the issuer answered the last fetch; None before any."""
        if self._attempts == 0:
            return None
        return self._fetched_at >= self._failed_at

    def _backing_off(self) -> bool:
        return self._clock() - self._failed_at < min(FAILURE_BACKOFF_SECONDS, self._min_refresh)

    def _refresh(self) -> None:
        """Fetch the key set; called with `_fetching` held."""
        if self._backing_off():
            raise IssuerUnavailable("issuer recently unreachable")
        try:
            data = self._fetch()
            keys = KeySet.import_key_set(data)
        except IssuerUnavailable as exc:
            self._failed(str(exc))
            raise
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            self._failed(f"issuer returned an unusable key set ({exc.__class__.__name__})")
            raise IssuerUnavailable(self.last_error) from exc
        finally:
            self._attempts += 1  # counted when it ends: a request waiting on it then takes its outcome
        self._load([k for k in keys if k.key_type == "RSA"])

    def _failed(self, reason: str) -> None:
        self._failed_at = self._clock()
        if reason != self.last_error:
            log.warning("the issuer's signing keys could not be fetched: %s", reason)
        self.last_error = reason

    def _load(self, keys: list) -> None:
        fingerprints = frozenset((k.kid, k.thumbprint()) for k in keys)
        if not self._fingerprints <= fingerprints:
            self.generation += 1
        if fingerprints != self._fingerprints:
            log.info("loaded %d signing key(s) from the issuer", len(keys))
        self._fingerprints = fingerprints
        self._keys = {k.kid: k for k in keys if k.kid}
        self._fetched_at = self._clock()
        self.last_error = None

    def _refresh_in_background(self) -> None:
        """Start one refresh unless one is running or the issuer just failed; never waits."""
        if self._backing_off() or not self._fetching.acquire(blocking=False):
            return

        def run() -> None:
            try:
                self._refresh()
            except IssuerUnavailable:
                pass  # logged by _failed; the old set keeps serving
            finally:
                self._fetching.release()

        self.background = threading.Thread(target=run, name="jwks-refresh", daemon=True)
        self.background.start()

    def _may_refetch(self) -> bool:
        return self._clock() - self._fetched_at >= self._min_refresh

    def ready(self) -> bool:
        """Keys are cached, or can be fetched now (readiness probes warm the cache this way).

        With keys cached, a probe also asks the issuer again in the background when nobody has for
        `min_refresh` seconds, so `reachable` reports an outage even while the cached keys serve.
        """
        if self._keys is not None:
            if self._clock() - max(self._fetched_at, self._failed_at) >= self._min_refresh:
                self._refresh_in_background()
            return True
        with self._fetching:
            if self._keys is None:
                try:
                    self._refresh()
                except IssuerUnavailable:
                    return False
        return True

    def issuer_answers(self) -> bool:
        """Whether the issuer answers, asking it now unless it was asked in the last few seconds.

        For browser sign-in and sign-out (rare next to API calls), which would otherwise send the
        browser to a host that is down: Authlib keeps the provider's endpoints for the process's life.
        """
        recent = min(FAILURE_BACKOFF_SECONDS, self._min_refresh)
        if self._clock() - max(self._fetched_at, self._failed_at) < recent:
            return self._fetched_at >= self._failed_at
        seen = self._attempts
        with self._fetching:
            if self._attempts == seen:
                try:
                    self._refresh()
                except IssuerUnavailable:
                    return False
        return self._fetched_at >= self._failed_at

    def checked_generation(self) -> int:
        """The key set's generation, after starting a background refresh if the set is too old.

        The token cache asks on every hit, so tokens it remembers also see a revocation in time.
        """
        if self._keys is not None and self._clock() - self._fetched_at >= self.max_age:
            self._refresh_in_background()
        return self.generation

    def key_for(self, kid: str):
        keys = self._keys
        if keys is not None:
            if self._clock() - self._fetched_at >= self.max_age:
                self._refresh_in_background()
            key = keys.get(kid)
            if key is not None:
                return key
            if not self._may_refetch():
                raise InvalidToken("the token is signed with an unknown key")
        # One fetch at a time. A request that waited for someone else's fetch takes its outcome
        # instead of fetching again, so a hanging issuer costs each request one wait at most.
        seen = self._attempts
        with self._fetching:
            keys = self._keys
            key = keys.get(kid) if keys is not None else None
            if key is None and self._attempts != seen:
                if self._failed_at > self._fetched_at:
                    raise IssuerUnavailable("issuer unreachable")
            elif key is None and (keys is None or self._may_refetch()):
                self._refresh()
                key = self._keys.get(kid)
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
