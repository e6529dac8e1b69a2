"""A real OpenID provider on 127.0.0.1 for the tests: discovery, JWKS, sign-in, and signed tokens.

It stands in for Auth0: the API fetches its keys over HTTP exactly as it would Auth0's,
and the browser sign-in runs the real authorization-code flow against it (PKCE, state,
nonce, client secret, ID and access tokens, end session). It also stands in for Auth0's
Management API (client-credentials token, PATCH /api/v2/users/{id}).
Switches let a test rotate keys, take the issuer down, slow it or make it answer garbage.
"""

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid

from joserfc import jws, jwt
from joserfc.jwk import RSAKey
from werkzeug.serving import make_server
from werkzeug.utils import redirect
from werkzeug.wrappers import Request, Response

AUDIENCE = "https://api.dmarket.test"
CLIENT_ID = "dmarket-spa-client"
CLIENT_SECRET = "dmarket-client-secret"
ADMIN_CLAIM = "https://localhost:5000/app_metadata"
MANAGEMENT_CLIENT_ID = "dmarket-management"
MANAGEMENT_CLIENT_SECRET = "dmarket-management-secret"


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
        # Sign-in: who the next /authorize signs in, and what the provider answers.
        self.login_as = {"sub": "auth0|alice", "email": "alice@example.com", "name": "Alice", "email_verified": True}
        self.deny_sign_in = False
        self.end_session = True
        self.id_token_overrides: dict = {}
        self.access_token_overrides: dict = {}
        self.codes: dict[str, dict] = {}
        self.authorize_requests: list[dict] = []
        self.token_requests: list[dict] = []
        # Management API stand-in.
        self.management_mode = "up"  # "up", "error" (HTTP 503), "reject" (HTTP 401 once)
        self.management_tokens: set[str] = set()
        self.management_token_requests = 0
        self.management_patches: list[tuple[str, dict]] = []

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
        elif request.path == "/authorize":
            response = self._authorize(request)
        elif request.path == "/oauth/token" and request.method == "POST":
            response = self._token(request)
        elif request.path == "/userinfo":
            response = self._userinfo(request)
        elif request.path == "/oidc/logout":
            response = Response("signed out")
        elif request.path.startswith("/api/v2/users/") and request.method == "PATCH":
            response = self._patch_user(request)
        else:
            response = Response("not found", status=404)
        return response(environ, start_response)

    def discovery(self) -> dict:
        doc = {
            "issuer": self.url,
            "jwks_uri": f"{self.url}.well-known/jwks.json",
            "authorization_endpoint": f"{self.url}authorize",
            "token_endpoint": f"{self.url}oauth/token",
            "userinfo_endpoint": f"{self.url}userinfo",
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }
        if self.end_session:
            doc["end_session_endpoint"] = f"{self.url}oidc/logout"
        return doc

    def _authorize(self, request: Request) -> Response:
        args = request.args.to_dict()
        self.authorize_requests.append(args)
        if args.get("client_id") != CLIENT_ID or not args.get("redirect_uri"):
            return Response("unknown client", status=400)
        sep = "&" if "?" in args["redirect_uri"] else "?"
        state = args.get("state", "")
        if self.deny_sign_in:
            return redirect(
                f"{args['redirect_uri']}{sep}error=access_denied&error_description=User+said+no&state={state}"
            )
        code = uuid.uuid4().hex
        self.codes[code] = {**args, "user": dict(self.login_as)}
        return redirect(f"{args['redirect_uri']}{sep}code={code}&state={state}")

    @staticmethod
    def _client(request: Request) -> tuple[str | None, str | None]:
        if request.authorization and request.authorization.type == "basic":
            return request.authorization.username, request.authorization.password
        return request.form.get("client_id"), request.form.get("client_secret")

    def _token(self, request: Request) -> Response:
        form = request.form.to_dict()
        self.token_requests.append(form)
        client_id, secret = self._client(request)
        if form.get("grant_type") == "client_credentials":
            return self._management_token(client_id, secret, form)
        grant = self.codes.pop(form.get("code", ""), None)
        if client_id != CLIENT_ID or secret != CLIENT_SECRET:
            return _oauth_error("invalid_client", 401)
        if form.get("grant_type") != "authorization_code" or grant is None:
            return _oauth_error("invalid_grant")
        if form.get("redirect_uri") != grant["redirect_uri"]:
            return _oauth_error("invalid_grant")
        verifier = form.get("code_verifier", "")
        if grant.get("code_challenge_method") != "S256" or b64(hashlib.sha256(verifier.encode()).digest()) != grant.get(
            "code_challenge"
        ):
            return _oauth_error("invalid_grant")
        user = grant["user"]
        profile = {k: user[k] for k in ("email", "name", "email_verified") if k in user}
        audience = [grant.get("audience") or AUDIENCE, f"{self.url}userinfo"]
        profile_claims = {k: v for k, v in user.items() if k != "sub"}
        access = self.token(user["sub"], **{"aud": audience, **profile_claims, **self.access_token_overrides})
        id_claims = {"aud": CLIENT_ID, "nonce": grant.get("nonce"), "azp": None, "gty": None, "scope": None}
        id_token = self.token(user["sub"], **{**profile, **id_claims, **self.id_token_overrides})
        body = {"access_token": access, "id_token": id_token, "token_type": "Bearer", "expires_in": 3600}
        return Response(json.dumps(body), mimetype="application/json")

    def _userinfo(self, request: Request) -> Response:
        auth = request.headers.get("Authorization", "")
        claims = jwt.decode(auth.removeprefix("Bearer "), self.signing_key).claims
        return Response(json.dumps({"sub": claims["sub"], "email": claims.get("email")}), mimetype="application/json")

    def _management_token(self, client_id, secret, form) -> Response:
        self.management_token_requests += 1
        if client_id != MANAGEMENT_CLIENT_ID or secret != MANAGEMENT_CLIENT_SECRET:
            return _oauth_error("access_denied", 401)
        if form.get("audience") != self.management_audience:
            return _oauth_error("access_denied", 403)
        token = self.token(f"{client_id}@clients", aud=self.management_audience, gty="client-credentials")
        self.management_tokens.add(token)
        body = {"access_token": token, "token_type": "Bearer", "expires_in": 86400}
        return Response(json.dumps(body), mimetype="application/json")

    @property
    def management_audience(self) -> str:
        return f"{self.url}api/v2/"

    def _patch_user(self, request: Request) -> Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if self.management_mode == "error":
            return Response("management API unavailable", status=503)
        if self.management_mode == "reject":
            self.management_mode = "up"
            self.management_tokens.clear()
        if token not in self.management_tokens:
            return Response(json.dumps({"error": "Unauthorized"}), status=401, mimetype="application/json")
        user_id = request.path.removeprefix("/api/v2/users/")
        body = request.get_json()
        self.management_patches.append((user_id, body))
        return Response(json.dumps({"user_id": user_id, **body}), mimetype="application/json")

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

    def escaped_token(self, sub: str = "auth0|alice", **claims) -> str:
        """Like `token`, with the payload serialised as ASCII JSON: a lone surrogate travels as \\udXXX, as any
        JSON producer may send it (joserfc's encoder refuses to)."""
        header = {"alg": "RS256", "typ": "JWT", "kid": self.signing_key.kid}
        payload = json.dumps(self.claims(sub, **claims)).encode()
        return jws.serialize_compact(header, payload, self.signing_key)

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


def _oauth_error(error: str, status: int = 400) -> Response:
    return Response(json.dumps({"error": error}), status=status, mimetype="application/json")
