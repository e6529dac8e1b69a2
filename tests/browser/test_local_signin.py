"""AUTH_MODE=local in Chromium: the sign-in form, Swagger UI authorized for the signed-in user, sign-out."""

import pytest
import requests
from playwright.sync_api import expect

from tests.browser.conftest import LOCAL
from tests.browser.pages import CREATE, CREATE_REST, ME, execute, open_swagger_ui, sign_in_locally

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_sign_in_then_swagger_ui_writes_for_the_user_then_sign_out(page, context, serve, browser_log):
    api = serve(**LOCAL).url

    sign_in_locally(page, api, "newcomer@example.com")
    assert [c["name"] for c in context.cookies(api)] == ["dmarket_session"]

    open_swagger_ui(page, api)  # nothing pasted into Authorize
    status, me = execute(page, ME)
    assert status == 200 and me["email"] == "newcomer@example.com"
    status, created = execute(page, CREATE_REST)  # the README's first product: Swagger UI's own example body
    assert status == 201 and created["name"] == "Desk lamp" and created["user_id"] == me["user_id"]
    status, second = execute(page, CREATE, {"name": "First lamp", "price": 12.5, "quantity": 2})
    assert status == 201 and second["name"] == "First lamp"
    listed = requests.get(f"{api}/products", timeout=5).json()
    assert [p["name"] for p in listed] == ["First lamp", "Desk lamp"]  # newest first

    page.goto(f"{api}/logout")
    expect(page.get_by_role("heading", level=1)).to_have_text("Signed out")
    assert page.url == f"{api}/signed-out"
    status, refused = execute_after_sign_out(page, api)
    assert status == 401 and refused["code"] == "unauthorized"
    assert browser_log.refused == [f"POST {api}/products/create 401"]
    assert browser_log.errors == [] and browser_log.failed == []


def execute_after_sign_out(page, api):
    open_swagger_ui(page, api)
    return execute(page, CREATE, {"name": "Too late", "price": 1, "quantity": 1})
