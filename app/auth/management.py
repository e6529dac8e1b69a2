"""Auth0's Management API: mirrors admin grants into a user's app_metadata, and disabled accounts into `blocked`.

A client-credentials token is fetched once and reused until shortly before it expires.
Every call has a timeout and is retried once (after a refused token, a network error,
429 or a 5xx); a failure is reported to the caller, never raised, because the local
change stands on its own.
"""

import logging
import threading
import time
from collections.abc import Callable, Iterable
from urllib.parse import quote

import requests
from flask import current_app

from app.config import issuer_url

log = logging.getLogger(__name__)
EXPIRY_MARGIN_SECONDS = 60


class ManagementClient:
    def __init__(self, *, issuer: str, client_id: str, client_secret: str, audience: str, timeout: float):
        self._token_url = issuer_url(issuer, "oauth/token")
        self._api = audience if audience.endswith("/") else f"{audience}/"
        self._credentials = {
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": client_secret,
            "audience": audience,
        }
        self._timeout = timeout
        self._http = requests.Session()
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0

    def _access_token(self, *, renew: bool = False) -> str:
        with self._lock:
            if renew or self._token is None or time.monotonic() >= self._expires_at:
                response = self._http.post(self._token_url, data=self._credentials, timeout=self._timeout)
                response.raise_for_status()
                body = response.json()
                self._token = body["access_token"]
                lifetime = float(body.get("expires_in", 3600))
                self._expires_at = time.monotonic() + max(0.0, lifetime - EXPIRY_MARGIN_SECONDS)
            return self._token

    def set_admin(self, user_id: str, is_admin: bool) -> bool:
        """PATCH app_metadata.is_admin; True when Auth0 accepted it."""
        return self._patch_user(user_id, {"app_metadata": {"is_admin": is_admin}})

    def set_blocked(self, user_id: str, blocked: bool) -> bool:
        """PATCH blocked (Auth0 then refuses the user's sign-ins); True when Auth0 accepted it."""
        return self._patch_user(user_id, {"blocked": blocked})

    def _patch_user(self, user_id: str, changes: dict) -> bool:
        url = f"{self._api}users/{quote(user_id, safe='')}"
        renew = False
        for attempt in (1, 2):
            try:
                token = self._access_token(renew=renew)
                response = self._http.patch(
                    url,
                    json=changes,
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=self._timeout,
                )
            except (requests.RequestException, ValueError, KeyError) as exc:
                log.warning("management API attempt %d for %s failed: %s", attempt, user_id, exc.__class__.__name__)
                continue
            if response.ok:
                return True
            log.warning("management API attempt %d for %s answered %s", attempt, user_id, response.status_code)
            if response.status_code == 401:
                renew = True
            elif response.status_code != 429 and response.status_code < 500:
                return False
        return False


def client_for(config) -> ManagementClient | None:
    if not (config["API_MANAGEMENT_CLIENT_ID"] and config["API_MANAGEMENT_CLIENT_SECRET"]):
        return None
    return ManagementClient(
        issuer=config["AUTH0_ISSUER"],
        client_id=config["API_MANAGEMENT_CLIENT_ID"],
        client_secret=config["API_MANAGEMENT_CLIENT_SECRET"],
        audience=config["API_MANAGEMENT_AUDIENCE"],
        timeout=config["HTTP_TIMEOUT"],
    )


def mirror(calls: Callable[[ManagementClient], Iterable[bool]]) -> str:
    """Make `calls` at Auth0 when the Management API is configured; "updated" when Auth0 accepted
    every one, "failed" otherwise, "not_configured" without it. The local change stands either way."""
    management = current_app.extensions["dmarket.auth"]["management"]
    if management is None:
        return "not_configured"
    return "updated" if all(list(calls(management))) else "failed"
