"""panva's oidc-provider (an OpenID Certified provider, tests/oidc/provider.mjs) run by node for the tests.

Installed by `npm ci` from tests/oidc/package-lock.json into tests/oidc/node_modules on first use.
Without node the tests skip with one line (under CI=true they fail). They run in the SQLite pass
only: nothing in them depends on the database.
"""

import json
import os
import re
import shutil
import subprocess
import threading
import time
from html import unescape
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
import requests
from flask_migrate import upgrade
from joserfc import jwt
from joserfc.jwk import RSAKey

from app import create_app
from app.extensions import db
from tests.conftest import service_missing
from tests.databases import postgres_base_url
from tests.issuer import ADMIN_CLAIM, AUDIENCE, new_key
from tests.live import free_port

HERE = Path(__file__).resolve().parent
WEB_CLIENT = ("dmarket-web", "dmarket-web-secret")
MACHINE_CLIENT = ("dmarket-machine", "dmarket-machine-secret")
# A public client, as Auth0 registers a Single Page Application: Swagger UI's Authorize (code + PKCE).
SWAGGER_CLIENT = "dmarket-swagger"
# The in-process app's public URL (PORT unset: http://localhost:5000): where the provider sends the browser back.
IN_PROCESS_API = "http://localhost:5000"

one_pass_only = pytest.mark.skipif(
    bool(postgres_base_url()), reason="oidc-provider tests run in the SQLite pass only (no database in them)"
)


def ensure_installed() -> str:
    """node's path, with the pinned oidc-provider installed; skips (fails under CI) without node."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        service_missing("the oidc-provider tests need node 20+ and npm (`apt-get install nodejs npm`)")
    if not (HERE / "node_modules" / "oidc-provider" / "package.json").exists():
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=HERE, capture_output=True, text=True, timeout=300
        )
        if done.returncode != 0:
            service_missing(f"`npm ci` in tests/oidc failed: {done.stderr.strip()[-300:]}")
    return node


class OIDCProvider:
    """One oidc-provider process; `restart(keys)` publishes another key set (the first key signs)."""

    def __init__(
        self,
        workdir: Path,
        *,
        profile: str = "auth0",
        trailing_slash: bool = False,
        skew: int = 0,
        api_urls: tuple[str, ...] = (IN_PROCESS_API,),
        keys: list[RSAKey] | None = None,
    ):
        self.node = ensure_installed()
        self.workdir = workdir
        self.port = free_port()
        base = f"http://127.0.0.1:{self.port}"
        self.issuer = f"{base}/" if trailing_slash else base
        self.base = base
        self.profile = profile
        self.skew = skew
        self.api_urls = api_urls
        self.keys = keys or [new_key()]
        self.process: subprocess.Popen | None = None

    def start(self) -> "OIDCProvider":
        jwks_file = self.workdir / f"jwks-{self.port}.json"
        jwks_file.write_text(json.dumps({"keys": [key.as_dict(private=True) for key in self.keys]}))
        config = {
            "port": self.port,
            "issuer": self.issuer,
            "jwks": str(jwks_file),
            "profile": self.profile,
            "audience": AUDIENCE,
            "adminClaim": ADMIN_CLAIM,
            "redirectUris": [f"{url}/callback" for url in self.api_urls],
            "swaggerRedirectUris": [f"{url}/openapi/oauth2-redirect.html" for url in self.api_urls],
            "postLogoutRedirectUris": [f"{url}/signed-out" for url in self.api_urls],
        }
        config_file = self.workdir / f"provider-{self.port}.json"
        config_file.write_text(json.dumps(config))
        args = [self.node, "--require", str(HERE / "skew.cjs"), str(HERE / "provider.mjs"), str(config_file)]
        env = {**os.environ, "OIDC_CLOCK_SKEW_SECONDS": str(self.skew)}
        self.process = subprocess.Popen(
            args, cwd=HERE, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        ready = threading.Event()
        output: list[str] = []

        def read() -> None:
            for line in self.process.stdout:
                output.append(line)
                if line.strip() == "listening":
                    ready.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        if not ready.wait(30):
            self.stop()
            raise RuntimeError(f"oidc-provider did not start: {''.join(output)[-2000:]}")
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        if self.process:
            self._reader.join(5)  # it ends at the closed pipe's end
            self.process.stdout.close()

    def restart(self, keys: list[RSAKey] | None = None) -> None:
        """Stop, then start on the same port with `keys` published (the first one signs)."""
        self.stop()
        if keys is not None:
            self.keys = keys
        self.start()

    def machine_token(self, **params) -> str:
        """A client-credentials access token for the API (Auth0's M2M flow, or RFC 8707's resource=)."""
        data = {
            "grant_type": "client_credentials",
            "client_id": MACHINE_CLIENT[0],
            "client_secret": MACHINE_CLIENT[1],
            "scope": "read:products write:products",
            **(params or {"resource": AUDIENCE}),
        }
        response = requests.post(f"{self.base}/token", data=data, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()["access_token"]

    def mint(self, key: RSAKey, sub: str = "mallory", **claims) -> str:
        """A token shaped like this provider's, signed with `key` directly (e.g. a leaked, revoked key)."""
        now = int(time.time())
        payload = {"iss": self.issuer, "sub": sub, "aud": AUDIENCE, "iat": now, "exp": now + 3600, **claims}
        return jwt.encode({"alg": "RS256", "typ": "at+jwt", "kid": key.kid}, payload, key)


def browse_provider(start: str, login: str, *, stop_at: str) -> str:
    """Sign in at the provider's own pages with plain HTTP (login, then consent), as a browser would.

    Follows the provider's redirects from `start` until one leaves for `stop_at`; returns that URL.
    """
    session = requests.Session()
    url = start
    for _ in range(20):
        if url.startswith(stop_at):
            return url
        response = session.get(url, allow_redirects=False, timeout=10)
        if response.is_redirect:
            url = urljoin(url, response.headers["Location"])
            continue
        assert response.status_code == 200, response.text[:500]
        form = re.search(r'<form[^>]*action="([^"]+)"[^>]*method="post"', response.text)
        assert form, response.text[:500]
        fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', response.text))
        if fields.get("prompt") == "login":
            fields.update(login=login, password="any")
        posted = session.post(urljoin(url, unescape(form.group(1))), data=fields, allow_redirects=False, timeout=10)
        assert posted.is_redirect, posted.text[:500]
        url = urljoin(url, posted.headers["Location"])
    raise AssertionError("the provider never sent the browser back")


def sign_in(client, provider: OIDCProvider, login: str, *, query: str = "") -> object:
    """/login at the API (Flask test client), the provider's pages over HTTP, then /callback; its response."""
    started = client.get(f"/login{query}")
    assert started.status_code == 302, started.json
    back = browse_provider(started.headers["Location"], login, stop_at=f"{IN_PROCESS_API}/callback")
    parts = urlsplit(back)
    return client.get(f"{parts.path}?{parts.query}")


def migrate(env: dict) -> None:
    """Bring the database of a live server's environment up to date (as `make serve` does first)."""
    app = create_app(env)
    with app.app_context():
        upgrade()
        db.engine.dispose()
