"""Swagger UI at /openapi, in Chromium: works offline, and its Authorize dialog authorizes for real."""

import pytest
import requests
from playwright.sync_api import expect

from tests.browser.pages import CREATE, execute, open_swagger_ui

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_renders_offline_and_creates_with_a_bearer_token(page, context, serve, issuer, browser_log):
    api = serve().url
    outside = []

    def only_the_api(route):
        if route.request.url.startswith((api, "data:")):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_api)
    open_swagger_ui(page, api)
    expect(page.locator(".info .title")).to_contain_text("DMarket API")

    page.get_by_role("button", name="Authorize").first.click()
    dialog = page.locator(".dialog-ux .modal-ux")
    expect(dialog.locator(".auth-container")).to_have_count(1)  # bearerAuth only: nothing that cannot work
    expect(dialog).to_contain_text("bearerAuth")
    expect(dialog).not_to_contain_text("sessionCookie")
    dialog.locator(".auth-container input").fill(issuer.token("auth0|dave", email="dave@example.com"))
    dialog.locator(".auth-btn-wrapper button.authorize").click()
    expect(dialog.locator(".auth-btn-wrapper button", has_text="Logout")).to_be_visible()
    dialog.locator(".auth-btn-wrapper button.btn-done").click()

    status, created = execute(page, CREATE, {"name": "Desk", "price": "99.90", "quantity": 4})
    assert status == 201 and created["user_id"] == "auth0|dave" and created["price"] == 99.9
    assert requests.get(f"{api}/products/{created['id']}", timeout=5).json()["name"] == "Desk"
    assert outside == [] and browser_log.failed == [] and browser_log.refused == []
    assert browser_log.errors == []
