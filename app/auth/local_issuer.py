"""Development issuer: an RSA key kept in instance/, so the API runs with no account anywhere."""

import json
import time
import uuid
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.jwk import RSAKey

from app.config import instance_secret, issuer_url

KEY_FILE = "local_issuer_key.json"


class LocalIssuer:
    """Signs access tokens that the API then verifies like any other issuer's."""

    def __init__(self, *, instance_path: str, issuer: str, audience: str, admin_claim: str):
        self.issuer = issuer
        self.audience = audience
        self.admin_claim = admin_claim
        self._key = _load_or_create_key(Path(instance_path) / KEY_FILE)

    def jwks(self) -> dict:
        return {"keys": [self._key.as_dict(private=False)]}

    def discovery(self) -> dict:
        return {
            "issuer": self.issuer,
            "jwks_uri": issuer_url(self.issuer, ".well-known/jwks.json"),
            "id_token_signing_alg_values_supported": ["RS256"],
            "subject_types_supported": ["public"],
            "response_types_supported": ["code"],
        }

    def mint(self, *, email: str, name: str | None = None, admin: bool = False, ttl: int = 3600) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": f"local|{email.lower()}",
            "aud": self.audience,
            "iat": now,
            "exp": now + ttl,
            "jti": uuid.uuid4().hex,
            "email": email,
            # The development issuer vouches for the address as it vouches for everything else.
            "email_verified": True,
            "name": name or email.split("@")[0],
        }
        if admin:
            claims[self.admin_claim] = {"is_admin": True}
        header = {"alg": "RS256", "typ": "at+jwt", "kid": self._key.kid}
        return jwt.encode(header, claims, self._key)


def _load_or_create_key(path: Path) -> RSAKey:
    """Create the key once, as instance secrets are: concurrent workers agree on a single key."""

    def generate() -> str:
        key = RSAKey.generate_key(2048, parameters={"use": "sig", "alg": "RS256"}, auto_kid=True)
        return json.dumps(key.as_dict(private=True))

    text = instance_secret(path, generate, "AUTH_MODE=auth0 (the local issuer keeps its key there)")
    try:
        return RSAKey.import_key(json.loads(text))
    except (ValueError, json.JSONDecodeError):
        raise RuntimeError(f"{path} does not hold a usable RSA key; delete it to make a new one") from None
