"""Verified tokens, remembered for a while, so a client's next request skips the RSA check and the user sync.

An entry is keyed by the whole token (never by its signature alone: a signature pasted onto
other claims must miss). The claims are trusted until the token's own `exp`, or until the
issuer's key set loses a key (a revocation may have removed the key that signed it: every entry is
then verified again; a refresh that brings the same keys, or only new ones, keeps them), and only
while that key set may still accept tokens (`JWKSCache.usable`: never past its age); the identity
built from them (the local user) only for IDENTITY_CACHE_SECONDS, after which the user is read
again. A change made through this process's ORM to any user (admin granted or revoked, account
deleted or disabled) drops every cached identity at once; a change made by another worker or
host takes effect within IDENTITY_CACHE_SECONDS for reads. Writes never rely on this cache: each
reads the caller's row in its own statement (app/services/products.py, `_caller_may_write`).

Admin rights never wait that long. An identity whose admin rights come from the database is
not remembered: an admin's user is read on every request, so a revocation made through any
worker or host binds their next request (a revoked admin could otherwise, for up to
IDENTITY_CACHE_SECONDS, grant admin back to themselves). The other way round, an admin-only
route reads a remembered non-admin again before refusing it (`decorators._enforce`), so a grant
counts at once too.
"""

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import event, inspect

from app.models import User
from app.services.users import Identity

# `remember(key_set=...)` left out: the key set's generation is read then.
_NOW = object()
# Bumped by every ORM change of a user in this process: identities cached before it are stale.
_user_changes = 0


@dataclass(frozen=True)
class _Entry:
    claims: dict[str, Any]
    expires_at: float  # the token's exp
    identity: Identity | None
    identity_until: float
    generation: int
    key_set: int  # the JWKS cache's generation it was verified against


def _detached(identity: Identity) -> Identity:
    """A copy whose user outlives the request's session (column values only, never flushed)."""
    user = identity.user
    snapshot = User(**{attr.key: getattr(user, attr.key) for attr in inspect(User).column_attrs})
    return replace(identity, user=snapshot)


class TokenCache:
    """A bounded LRU of verified tokens (the oldest-used goes first); safe across threads."""

    def __init__(self, *, size: int, identity_seconds: float, keys=None, clock=time.time):
        """`keys`: the verifier's JWKSCache; a token verified before its last reload is verified again."""
        self.size = size
        self._keys = keys
        self.identity_seconds = identity_seconds
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def claims(self, token: str) -> dict[str, Any] | None:
        """The claims of a token verified before and not expired since; None otherwise."""
        entry = self._get(token)
        return entry.claims if entry else None

    def identity(self, token: str) -> Identity | None:
        """The identity built for this token, while it is fresh and no user changed since."""
        entry = self._get(token)
        if entry is None or entry.identity is None:
            return None
        if self._clock() >= entry.identity_until or entry.generation != _user_changes:
            return None
        return entry.identity

    def remember(
        self, token: str, claims: dict[str, Any], identity: Identity | None = None, *, key_set: object = _NOW
    ) -> None:
        """`key_set`: `key_set()` read before the token was verified (a key revoked meanwhile must not count).

        None (no key set was usable then) remembers nothing: a generation read after the check might be newer
        than the set that accepted the token.
        """
        if self.size <= 0 or not isinstance(claims.get("exp"), int | float):
            return
        key_set = self.key_set() if key_set is _NOW else key_set
        if key_set is None:
            return
        now = self._clock()
        rememberable = identity is not None and self.identity_seconds > 0 and not identity.user.is_admin
        cached = _detached(identity) if rememberable else None
        entry = _Entry(claims, float(claims["exp"]), cached, now + self.identity_seconds, _user_changes, key_set)
        with self._lock:
            self._entries[token] = entry
            self._entries.move_to_end(token)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def key_set(self) -> int | None:
        """The usable key set's generation (entries from an earlier one are verified again); None: no set may accept.

        May wait for a refetch of a set past its age (at most HTTP_TIMEOUT): never called under the lock.
        """
        return self._keys.usable_generation() if self._keys is not None else 0

    def _get(self, token: str) -> _Entry | None:
        key_set = self.key_set()
        with self._lock:
            entry = self._entries.get(token)
            if entry is None:
                return None
            if key_set is None:
                return None  # verified again, and refused or answered 503 there
            if self._clock() >= entry.expires_at or entry.key_set != key_set:
                del self._entries[token]
                return None
            self._entries.move_to_end(token)
            return entry


def _user_changed(*_args) -> None:
    global _user_changes
    _user_changes += 1


event.listen(User, "after_update", _user_changed)
event.listen(User, "after_delete", _user_changed)
