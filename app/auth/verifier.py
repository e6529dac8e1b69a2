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
    """A key source reading `jwks_uri` from the issuer's OpenID discovery document."""
    session = requests.Session()
    jwks_uri: str | None = None

    def fetch() -> dict:
        nonlocal jwks_uri
        try:
            if jwks_uri is None:
                doc = session.get(f"{issuer}.well-known/openid-configuration", timeout=timeout)
                doc.raise_for_status()
                meta = doc.json()
                if meta.get("issuer") != issuer:
                    raise IssuerUnavailable(f"discovery document names issuer {meta.get('issuer')!r}")
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
    """The issuer's public keys, fetched lazily and refetched for an unknown `kid`.

    Refetches are throttled (`min_refresh` seconds), so tokens with forged key ids cannot
    make us hammer the issuer. Only the configured source is ever contacted: `jku`/`x5u`
    headers in a token are ignored. A cached key is found without any lock: a refetch
    (up to HTTP_TIMEOUT while the issuer hangs) holds `_fetching`, which only requests
    that need a fetch ever wait on, and at most once each.
    """

    def __init__(self, fetch: Callable[[], dict], min_refresh: float = 30, clock=time.monotonic):
        self._fetch = fetch
        self._min_refresh = min_refresh
        self._clock = clock
        self._fetching = threading.Lock()
        self._keys: KeySet | None = None  # replaced whole, never mutated: safe to read unlocked
        # Bumped by every key set loaded: what was verified with an earlier set is checked again.
        self.generation = 0
        self._fetched_at = float("-inf")
        self._failed_at = float("-inf")
        self._attempts = 0  # fetches tried so far: a waiter sees whether one ended while it waited

    @property
    def loaded(self) -> bool:
        return self._keys is not None

    def _refresh(self) -> None:
        """Fetch the key set; called with `_fetching` held."""
        now = self._clock()
        if now - self._failed_at < min(FAILURE_BACKOFF_SECONDS, self._min_refresh):
            raise IssuerUnavailable("issuer recently unreachable")
        try:
            data = self._fetch()
            keys = KeySet.import_key_set(data)
        except IssuerUnavailable:
            self._failed_at = self._clock()
            raise
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            self._failed_at = self._clock()
            raise IssuerUnavailable(f"issuer returned an unusable key set ({exc.__class__.__name__})") from exc
        finally:
            self._attempts += 1  # counted when it ends: a request waiting on it then takes its outcome
        self._keys = KeySet([k for k in keys if k.key_type == "RSA"])
        self.generation += 1
        self._fetched_at = self._clock()
        log.info("loaded %d signing key(s) from the issuer", len(self._keys.keys))

    def _may_refetch(self) -> bool:
        return self._clock() - self._fetched_at >= self._min_refresh

    def ready(self) -> bool:
        """Keys are cached, or can be fetched now (readiness probes warm the cache this way)."""
        if self._keys is not None:
            return True
        with self._fetching:
            if self._keys is None:
                try:
                    self._refresh()
                except IssuerUnavailable:
                    return False
        return True

    def key_for(self, kid: str):
        keys = self._keys
        if keys is not None:
            key = _find(keys, kid)
            if key is not None:
                return key
            if not self._may_refetch():
                raise InvalidToken("the token is signed with an unknown key")
        # One fetch at a time. A request that waited for someone else's fetch takes its outcome
        # instead of fetching again, so a hanging issuer costs each request one wait at most.
        seen = self._attempts
        with self._fetching:
            keys = self._keys
            key = _find(keys, kid) if keys is not None else None
            if key is None and self._attempts != seen:
                if self._failed_at > self._fetched_at:
                    raise IssuerUnavailable("issuer unreachable")
            elif key is None and (keys is None or self._may_refetch()):
                self._refresh()
                key = _find(self._keys, kid)
        if key is None:
            raise InvalidToken("the token is signed with an unknown key")
        return key


def _find(keys: KeySet, kid: str):
    for key in keys.keys:
        if key.kid == kid:
            return key
    return None


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
        if exc.claim == "nbf":
            return "the token is not valid yet"
        return f"the token's {exc.claim} claim is not accepted"
    return "the token is malformed"
