"""Two-step key rotation against oidc-provider on gunicorn with 2 workers: when each worker refuses the old key."""

import logging
import threading
import time

import pytest
import requests

from tests.factories import bearer
from tests.issuer import new_key
from tests.live import LiveServer
from tests.oidc.harness import migrate, one_pass_only

pytestmark = [pytest.mark.slow, pytest.mark.oidc_provider, one_pass_only]

MAX_AGE = 3  # JWKS_MAX_AGE_SECONDS for these tests (300 by default); HTTP_TIMEOUT is the suite's 2 s
# The figures, shown with `pytest -rP` (warnings: the suite's log level hides info).
measured = logging.getLogger("tests.oidc.revocation")


def statuses(url: str, token: str, count: int) -> list[int]:
    """`count` calls, each on a new connection: gunicorn hands each to whichever worker accepts first."""
    return [requests.get(f"{url}/me", headers=bearer(token), timeout=10).status_code for _ in range(count)]


def burst(url: str, tokens: list[str]) -> list[tuple[int, float]]:
    """One call per token, all at once, each on a new connection: (status, seconds) in order."""
    results: list[tuple[int, float] | None] = [None] * len(tokens)
    start = threading.Barrier(len(tokens))

    def call(i: int) -> None:
        start.wait()
        began = time.monotonic()
        response = requests.get(f"{url}/me", headers={**bearer(tokens[i]), "Connection": "close"}, timeout=10)
        results[i] = (response.status_code, time.monotonic() - began)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(tokens))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def jwks_fetches(url: str) -> float:
    """dmarket_jwks_fetches_total summed over the workers (METRICS_ENABLED)."""
    for line in requests.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith("dmarket_jwks_fetches_total "):
            return float(line.split()[1])
    return 0.0


def live_env(settings: dict, issuer: str) -> dict:
    return {
        **settings,
        "APP_ENV": "production",
        "AUTH0_ISSUER": issuer,
        "JWKS_MAX_AGE_SECONDS": str(MAX_AGE),
        "JWKS_MIN_REFRESH_SECONDS": "1",
        "METRICS_ENABLED": "true",
    }


def test_under_traffic_a_revoked_key_is_refused_by_every_worker_within_max_age(start_provider, settings):
    old, new = new_key(), new_key()
    provider = start_provider(profile="auth0", keys=[old])
    env = live_env(settings, provider.issuer)
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

        revoked_at = time.monotonic()
        provider.restart([new])  # step 2: the old key revoked
        while set(statuses(api.url, issued_before, 10)) != {401}:
            # The bound is JWKS_MAX_AGE_SECONDS; the extra second is this loop's step (ten calls).
            assert time.monotonic() - revoked_at < MAX_AGE + 1, "the revoked key is still trusted"
            time.sleep(0.1)
        accepted_for = time.monotonic() - revoked_at
        measured.warning("under traffic: revoked key accepted for %.2f s (bound %d s)", accepted_for, MAX_AGE)

        assert set(statuses(api.url, issued_before, 30)) == {401}  # on every worker, from now on
        assert set(statuses(api.url, provider.mint(old, sub="dmarket-machine"), 10)) == {401}  # minted after
        assert set(statuses(api.url, issued_after, 20)) == {200}
    assert accepted_for <= MAX_AGE + 1


def test_every_idle_worker_refuses_a_revoked_key_from_its_first_request(start_provider, settings):
    """Both workers idle from before the revocation to the bound + 1 s: the first call each takes is refused."""
    old, new = new_key(), new_key()
    provider = start_provider(profile="auth0", keys=[old, new])  # step 1 done: the next key beside the current
    env = live_env(settings, provider.issuer)
    server = LiveServer(env, workers=2)
    migrate({**env, "PUBLIC_URL": server.url})
    with server as api:
        issued = provider.machine_token()  # signed with the old key
        deadline = time.monotonic() + 20  # the second worker may still be starting
        while jwks_fetches(api.url) < 2 and time.monotonic() < deadline:
            # Calls at once: each worker takes some, fetches [old, new] and remembers the token.
            assert {status for status, _ in burst(api.url, [issued] * 4)} == {200}
        assert jwks_fetches(api.url) == 2, "both workers must hold the old key before it is revoked"

        revoked_at = time.monotonic()
        provider.restart([new])  # step 2: the old key revoked
        leaked = provider.mint(old, sub="dmarket-machine")  # a token never seen, signed with the revoked key
        time.sleep(revoked_at + MAX_AGE + 1 - time.monotonic())  # no call reaches the API meanwhile
        sent_after = time.monotonic() - revoked_at
        answers = burst(api.url, [issued, leaked] * 4)
        fetched = jwks_fetches(api.url) - 2
        measured.warning(
            "idle workers: first calls %.2f s after the revocation (bound %d s): %s, %d refetch(es)",
            sent_after,
            MAX_AGE,
            ", ".join(f"{status} in {seconds * 1000:.0f} ms" for status, seconds in answers),
            fetched,
        )
        assert [status for status, _ in answers] == [401] * 8
        # Each worker refetched once, so each took a call of the burst first: its first call was refused.
        assert fetched == 2
        assert set(statuses(api.url, provider.machine_token(), 10)) == {200}  # the new key's tokens still work
