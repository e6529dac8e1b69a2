"""AUTH_MODE=auth0 in Chromium, against the suite's own OpenID provider: sign in, write, sign out."""

import pytest
import requests
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_provider_sign_in_then_a_write_then_sign_out_through_the_provider(page, serve, login_issuer, browser_log):
    api = serve(AUTH0_ISSUER=login_issuer.url).url

    page.goto(f"{api}/login?next=/openapi")
    expect(page.get_by_role("heading", level=1)).to_have_text("Test issuer")  # the provider's own page
    page.get_by_label("Email").fill("carol@example.com")
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(f"{api}/openapi/")  # through /callback, back where sign-in started: Swagger UI
    me = page.evaluate("() => fetch('/me').then(r => r.json())")
    assert me["user_id"] == "auth0|carol@example.com" and me["email"] == "carol@example.com"

    created = page.evaluate(
        """() => fetch('/products', {method: 'POST', headers: {'Content-Type': 'application/json'},
                  body: JSON.stringify({name: 'Kettle', price: '30.00', quantity: '1'})})
              .then(async r => ({status: r.status, body: await r.json()}))"""
    )
    assert created["status"] == 201 and created["body"]["user_id"] == "auth0|carol@example.com"
    assert requests.get(f"{api}/products/{created['body']['id']}", timeout=5).json()["name"] == "Kettle"

    page.goto(f"{api}/logout")
    page.wait_for_url(f"{api}/signed-out")
    expect(page.get_by_role("heading", level=1)).to_have_text("Signed out")
    (ended,) = login_issuer.end_session_requests
    assert ended["post_logout_redirect_uri"] == f"{api}/signed-out" and ended["id_token_hint"].count(".") == 2
    page.goto(f"{api}/openapi")
    assert page.evaluate("() => fetch('/me').then(r => r.status)") == 401
    assert browser_log.errors == [] and browser_log.failed == []
    assert browser_log.refused == [f"GET {api}/me 401"]
