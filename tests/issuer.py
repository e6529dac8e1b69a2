"""A real OpenID issuer on 127.0.0.1 for the tests: discovery, JWKS, and signed tokens.

It stands in for Auth0: the API fetches its keys over HTTP exactly as it would Auth0's.
Switches let a test rotate keys, take the issuer down, slow it or make it answer garbage.
"""

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid

from joserfc import jwt
from joserfc.jwk import RSAKey
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

AUDIENCE = "https://api.dmarket.test"
CLIENT_ID = "dmarket-spa-client"
ADMIN_CLAIM = "https://localhost:5000/app_metadata"


def new_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"use": "sig", "alg": "RS256"}, auto_kid=True)


def b64(data: bytes | dict) -> str:
    if isinstance(data, dict):
        data = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class LocalOIDCIssuer:
    def __init__(self):
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}/"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.reset()

    def start(self) -> "LocalOIDCIssuer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()

    def reset(self) -> None:
        self.signing_key = new_key()
        self.published = [self.signing_key]
        self.mode = "up"  # "up", "error" (HTTP 500), "garbage", "slow"
        self.delay = 0.0
        self.jwks_requests = 0

    def rotate(self, key: RSAKey | None = None, keep_old: bool = True) -> RSAKey:
        """Publish a new signing key (keeping the old one published unless told not to)."""
        self.signing_key = key or new_key()
        self.published = [*self.published, self.signing_key] if keep_old else [self.signing_key]
        return self.signing_key

    def _wsgi(self, environ, start_response):
        request = Request(environ)
        if self.mode == "slow":
            time.sleep(self.delay)
        if self.mode == "error":
            response = Response("issuer exploded", status=500)
        elif request.path == "/.well-known/openid-configuration":
            response = Response(json.dumps(self.discovery()), mimetype="application/json")
        elif request.path == "/.well-known/jwks.json":
            self.jwks_requests += 1
            body = "<html>not json" if self.mode == "garbage" else json.dumps(self.jwks())
            response = Response(body, mimetype="application/json")
        else:
            response = Response("not found", status=404)
        return response(environ, start_response)

    def discovery(self) -> dict:
        return {
            "issuer": self.url,
            "jwks_uri": f"{self.url}.well-known/jwks.json",
            "id_token_signing_alg_values_supported": ["RS256"],
        }

    def jwks(self) -> dict:
        return {"keys": [key.as_dict(private=False) for key in self.published]}

    def claims(self, sub: str = "auth0|alice", **overrides) -> dict:
        """Auth0's default access-token profile: aud is a list holding /userinfo too."""
        now = int(time.time())
        claims = {
            "iss": self.url,
            "sub": sub,
            "aud": [AUDIENCE, f"{self.url}userinfo"],
            "iat": now,
            "exp": now + 3600,
            "azp": CLIENT_ID,
            "gty": "password",
            "scope": "openid profile email",
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(
        self, sub: str = "auth0|alice", *, key: RSAKey | None = None, header: dict | None = None, **claims
    ) -> str:
        """A token signed RS256 by the current key (or `key`); claims=None removes a claim."""
        key = key or self.signing_key
        hdr = {"alg": "RS256", "typ": "JWT", "kid": key.kid, **(header or {})}
        hdr = {k: v for k, v in hdr.items() if v is not None}
        return jwt.encode(hdr, self.claims(sub, **claims), key)

    def unsigned_token(self, sub: str = "auth0|alice", alg: str = "none") -> str:
        return f"{b64({'alg': alg, 'typ': 'JWT', 'kid': self.signing_key.kid})}.{b64(self.claims(sub))}."

    def hs256_with_public_key(self, sub: str = "auth0|alice") -> str:
        """The classic key-confusion attack: HMAC keyed with the RSA public key's PEM."""
        signing_input = f"{b64({'alg': 'HS256', 'typ': 'JWT', 'kid': self.signing_key.kid})}.{b64(self.claims(sub))}"
        secret = self.signing_key.as_pem(private=False)
        signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{b64(signature)}"

    def id_token(self, sub: str = "auth0|alice") -> str:
        """An ID token (aud = the SPA's client id): not an access token for this API."""
        return self.token(sub, aud=CLIENT_ID, nonce=uuid.uuid4().hex)
