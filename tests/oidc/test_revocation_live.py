"""Two-step key rotation against oidc-provider, measured on gunicorn with 2 workers: the revoked key's bound."""

import logging
import time

import pytest
import requests

from tests.factories import bearer
from tests.issuer import new_key
from tests.live import LiveServer
from tests.oidc.harness import migrate, one_pass_only

pytestmark = [pytest.mark.slow, pytest.mark.oidc_provider, one_pass_only]

MAX_AGE = 3  # JWKS_MAX_AGE_SECONDS for this test (300 by default)
HTTP_TIMEOUT = 2  # the suite's setting: the longest one key fetch may take


def statuses(url: str, token: str, count: int) -> list[int]:
    """`count` calls, each on a new connection: gunicorn hands each to whichever worker accepts first."""
    return [requests.get(f"{url}/me", headers=bearer(token), timeout=10).status_code for _ in range(count)]


def test_a_revoked_key_is_refused_by_every_worker_within_max_age_plus_one_fetch(start_provider, settings):
    old, new = new_key(), new_key()
    provider = start_provider(profile="auth0", keys=[old])
    env = {
        **settings,
        "APP_ENV": "production",
        "AUTH0_ISSUER": provider.issuer,
        "JWKS_MAX_AGE_SECONDS": str(MAX_AGE),
        "JWKS_MIN_REFRESH_SECONDS": "1",
    }
    server = LiveServer(env, workers=2)
    migrate({**env, "PUBLIC_URL": server.url})
    with server as api:
        issued_before = provider.machine_token()
        assert set(statuses(api.url, issued_before, 20)) == {200}  # both workers hold [old], and the token cached

        provider.restart([new, old])  # step 1: the next key published beside the current one
        time.sleep(1.1)  # JWKS_MIN_REFRESH_SECONDS: an unknown kid may be fetched again
        issued_after = provider.machine_token()
        assert set(statuses(api.url, issued_after, 20)) == {200}
        assert set(statuses(api.url, issued_before, 10)) == {200}

        provider.restart([new])  # step 2: the old key revoked
        revoked_at = time.monotonic()
        while set(statuses(api.url, issued_before, 10)) != {401}:
            assert time.monotonic() - revoked_at < MAX_AGE + HTTP_TIMEOUT + 1, "the revoked key is still trusted"
            time.sleep(0.1)
        accepted_for = time.monotonic() - revoked_at
        # The figure, shown with `pytest -rP` (a warning: the suite's log level hides info).
        measured = logging.getLogger("tests.oidc.revocation")
        measured.warning("revoked key accepted for %.2f s (bound %d s)", accepted_for, MAX_AGE + HTTP_TIMEOUT)

        assert set(statuses(api.url, issued_before, 30)) == {401}  # on every worker, from now on
        assert set(statuses(api.url, provider.mint(old, sub="dmarket-machine"), 10)) == {401}  # minted after
        assert set(statuses(api.url, issued_after, 20)) == {200}
    assert accepted_for <= MAX_AGE + HTTP_TIMEOUT
