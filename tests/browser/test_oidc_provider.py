"""Chromium through a real, certified OpenID provider (oidc-provider, tests/oidc): its own pages, then the API's."""

import time

import pytest
import requests
from playwright.sync_api import expect

from tests.browser.console import screenshot
from tests.live import LiveServer, free_port
from tests.oidc.harness import WEB_CLIENT, OIDCProvider, migrate, one_pass_only

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.oidc_provider, one_pass_only]
# oidc-provider's pages ask for a web font; nothing outside 127.0.0.1 answers here.
OFFLINE = "fonts.googleapis.com"


@pytest.mark.parametrize("profile", ["auth0", "standard"])
def test_sign_in_a_write_and_sign_out_at_the_provider(page, settings, tmp_path, browser_log, profile):
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    provider = OIDCProvider(tmp_path, profile=profile, trailing_slash=profile == "standard", api_urls=(api,))
    env = {
        **settings,
        "AUTH0_ISSUER": provider.issuer,
        "CLIENT_ID": WEB_CLIENT[0],
        "CLIENT_SECRET": WEB_CLIENT[1],
        "JWKS_MIN_REFRESH_SECONDS": "1",
    }
    migrate({**env, "PUBLIC_URL": api})
    with LiveServer(env, workers=2, port=port):
        provider.start()
        try:
            page.goto(f"{api}/login?next=/openapi")
            page.locator("input[name=login]").fill("carol@example.com")  # the provider's own login page
            page.locator("input[name=password]").fill("any password")
            page.get_by_role("button", name="Sign-in").click()
            page.get_by_role("button", name="Continue").click()  # its consent page
            page.wait_for_url(f"{api}/openapi/")
            banner = page.locator("#dmarket-session")  # Swagger UI names the session's user, and what curl lacks
            expect(banner.locator("[data-user]")).to_have_text("carol@example.com")
            expect(banner).to_contain_text("by this browser's session")
            expect(banner).to_contain_text("curl commands carry no credential")
            screenshot(page, f"17-{profile}-swagger-ui-signed-in-by-session")
            me = page.evaluate("() => fetch('/me').then(r => r.json())")
            assert me["user_id"] == "carol@example.com" and me["email"] == "carol@example.com"

            created = page.evaluate(
                """() => fetch('/products', {method: 'POST', headers: {'Content-Type': 'application/json'},
                          body: JSON.stringify({name: 'Kettle', price: '30.00', quantity: 1})})
                      .then(async r => ({status: r.status, body: await r.json()}))"""
            )
            assert created["status"] == 201 and created["body"]["user_id"] == "carol@example.com"
            assert requests.get(f"{api}/products/{created['body']['id']}", timeout=5).json()["name"] == "Kettle"

            page.goto(f"{api}/logout")
            page.get_by_role("button", name="Yes, sign me out").click()  # the provider's RP-initiated logout
            page.wait_for_url(f"{api}/signed-out")
            expect(page.get_by_role("heading", level=1)).to_have_text("Signed out")
            assert page.evaluate("() => fetch('/me').then(async r => (await r.text(), r.status))") == 401
            page.goto(f"{api}/login")  # the provider's session ended too: it asks who you are again
            expect(page.locator("input[name=login]")).to_be_visible()
        finally:
            provider.stop()
        time.sleep(1.1)  # JWKS_MIN_REFRESH_SECONDS=1: how long a worker trusts its last contact with the issuer
        down = page.goto(f"{api}/login")  # the API's own answer, never the browser's connection error
        assert down.status == 503 and down.headers["retry-after"] == "5"
        expect(page.get_by_role("heading", level=1)).to_have_text("Sign-in is unavailable")
        expect(page.get_by_text("The identity provider is unavailable; retry shortly.")).to_be_visible()
    assert browser_log.errors == []
    assert [failure for failure in browser_log.failed if OFFLINE not in failure] == []
    assert browser_log.refused == [f"GET {api}/me 401", f"GET {api}/login 503"]
