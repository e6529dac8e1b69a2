"""The identity provider accepting connections and never answering, while /login and bearer calls share a worker."""

import logging
import threading
import time

import pytest
import requests

from tests.factories import bearer
from tests.issuer import LocalOIDCIssuer
from tests.live import LiveServer

pytestmark = pytest.mark.slow

# The figures, shown with `pytest -rP` (warnings: the suite's log level hides info).
measured = logging.getLogger("tests.provider_hangs")


@pytest.fixture
def issuer():
    """An issuer of this test's own: the requests it leaves hanging end with it."""
    own = LocalOIDCIssuer().start()
    yield own
    own.stop()


def timed(call) -> tuple[requests.Response, float]:
    began = time.monotonic()
    response = call()
    return response, time.monotonic() - began


def test_login_never_holds_the_worker_bearer_calls_need(app, settings, issuer):
    """One sync worker, keys cached; then the provider hangs: /login waits 0.25 s at most, bearer calls never."""
    env = {**settings, "JWKS_MIN_REFRESH_SECONDS": "1"}  # the issuer's verdict is old after 1 s
    with LiveServer(env, workers=1) as api:
        token = bearer(issuer.token())
        login = f"{api.url}/login"
        assert requests.get(f"{api.url}/me", headers=token, timeout=10).status_code == 200  # keys cached
        assert requests.get(login, allow_redirects=False, timeout=10).status_code == 302  # Authlib's metadata too

        issuer.mode, issuer.delay = "slow", 8  # accepts, and answers nothing within HTTP_TIMEOUT (2 s)
        time.sleep(1.1)
        logins: list[tuple[requests.Response, float]] = []
        start_login = lambda: requests.get(login, allow_redirects=False, timeout=10)  # noqa: E731
        background = threading.Thread(target=lambda: logins.append(timed(start_login)))
        background.start()
        bearer_calls = []
        for _ in range(6):
            time.sleep(0.1)  # the first one lands while /login runs on the only worker
            response, seconds = timed(lambda: requests.get(f"{api.url}/me", headers=token, timeout=10))
            bearer_calls.append((response.status_code, seconds))
        background.join()
        ((first_login, first_seconds),) = logins

        time.sleep(2.2)  # the check in the background gave up after HTTP_TIMEOUT
        down, down_seconds = timed(start_login)
        after, after_seconds = timed(lambda: requests.get(f"{api.url}/me", headers=token, timeout=10))
    measured.warning(
        "provider hanging: /login %d in %.0f ms (then %d in %.0f ms), bearer calls %s ms (then %.0f ms)",
        first_login.status_code,
        first_seconds * 1000,
        down.status_code,
        down_seconds * 1000,
        ", ".join(f"{seconds * 1000:.0f}" for _, seconds in bearer_calls),
        after_seconds * 1000,
    )
    # It asked the issuer in the background and went by the last verdict (the provider answered)...
    assert first_login.status_code == 302 and first_seconds < 1.0
    assert {status for status, _ in bearer_calls} == {200} and max(seconds for _, seconds in bearer_calls) < 0.75
    # ...which the check, given up after HTTP_TIMEOUT, has since replaced.
    assert down.status_code == 503 and down.json()["code"] == "issuer_unavailable" and down_seconds < 0.5
    assert after.status_code == 200 and after_seconds < 0.5
