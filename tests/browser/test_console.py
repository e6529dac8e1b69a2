"""Swagger UI as the developer's console, in Chromium: a newcomer's first ten minutes, and a real provider's.

Local mode under `make run` on a port of its own: the printed links, sign-in landing on `next`,
the page naming who is signed in, Try it out creating a product, and the curl command it shows
run as copied. Auth0 mode against oidc-provider: Authorize through the provider's own pages,
then Try it out and the curl. Set DMARKET_SCREENSHOTS=DIR to keep a picture of each step.
"""

import pytest
import requests
from playwright.sync_api import expect

from tests.browser.console import MakeRun, project_copy, run_as_copied, screenshot, shown_curl
from tests.browser.pages import CREATE, CREATE_REST, execute
from tests.live import free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow]
BANNER = "#dmarket-session"


@pytest.fixture
def make_run(tmp_path):
    server = MakeRun(project_copy(tmp_path), free_port())
    yield server
    server.stop()


def test_a_newcomer_from_the_logged_link_to_a_curl_that_works(page, context, make_run, tmp_path, browser_log):
    port = make_run.port
    api = f"http://localhost:{port}"
    link = make_run.wait_for_link()
    assert link.startswith(f"{api}/login?code=")  # the log names the server that runs
    printed = make_run.flask("auth", "signin-link", PORT=str(port))
    assert printed.returncode == 0 and printed.stdout == f"{link}\n"  # the README's alternative agrees
    minted = make_run.flask("auth", "token", "cli@example.com", PORT=str(port))
    assert minted.returncode == 0 and f"to sign in, open {link} " in minted.stderr

    page.goto(f"{api}/openapi/")  # before signing in: the page says so, and how
    expect(page.locator(BANNER)).to_contain_text("Not signed in.")
    expect(page.locator(BANNER)).to_contain_text("flask auth token EMAIL")
    screenshot(page, "01-local-swagger-ui-not-signed-in")

    page.goto(link)  # the logged link: its code fills the form in
    page.get_by_label("Email").fill("newcomer@example.com")
    screenshot(page, "02-local-sign-in-form")
    with page.expect_response(lambda r: r.url == f"{api}/login" and r.request.method == "POST") as posted:
        page.get_by_role("button", name="Sign in").click()
    assert posted.value.status == 303 and posted.value.headers["location"] == "/"
    page.wait_for_url(f"{api}/openapi/")  # next (the root) is Swagger UI
    banner = page.locator(BANNER)
    expect(banner.locator("[data-user]")).to_have_text("newcomer@example.com")
    expect(banner).to_contain_text("by this browser's session")
    expect(banner).to_contain_text("Try it out sends a bearer token minted for you")
    expect(banner.get_by_role("link", name="Sign out")).to_have_attribute("href", "/logout")
    screenshot(page, "03-local-swagger-ui-signed-in")

    page.get_by_role("button", name="Authorize").first.click()  # locked, nothing to paste
    dialog = page.locator(".dialog-ux .modal-ux")
    expect(dialog).to_contain_text("Authorized")
    expect(dialog.locator(".auth-btn-wrapper button", has_text="Logout")).to_be_visible()
    screenshot(page, "04-local-authorize-already-authorized")
    dialog.locator(".auth-btn-wrapper button.btn-done").click()

    status, created = execute(page, CREATE_REST)
    assert status == 201 and created["user_id"] == "local|newcomer@example.com"
    command = shown_curl(page, CREATE_REST)
    assert "-H 'Authorization: Bearer ey" in command and f"'{api}/products'" in command
    screenshot(page, "05-local-try-it-out-201-and-its-curl")
    status, body = run_as_copied(command, tmp_path)
    assert status == 201, body
    copied = requests.get(f"{api.replace('localhost', '127.0.0.1')}/products?per_page=2", timeout=5).json()
    assert [p["user_id"] for p in copied] == ["local|newcomer@example.com"] * 2  # the curl's and Try it out's
    status, second = execute(page, CREATE, {"name": "Lamp two", "price": 5, "quantity": 1})
    assert status == 201 and second["name"] == "Lamp two"

    page.goto(f"http://127.0.0.1:{port}/openapi/")  # the other loopback name: sent to the one that signs in
    page.wait_for_url(f"{api}/openapi/")
    expect(page.locator(BANNER).locator("[data-user]")).to_have_text("newcomer@example.com")
    screenshot(page, "06-local-other-host-name-redirected")

    page.locator(BANNER).get_by_role("link", name="Sign out").click()
    page.wait_for_url(f"{api}/signed-out")
    expect(page.get_by_role("heading", level=1)).to_have_text("Signed out")
    screenshot(page, "07-local-signed-out")
    status, _ = run_as_copied(command, tmp_path)  # a token of its own: still good until it expires
    assert status == 201
    assert browser_log.errors == [] and browser_log.failed == []
    assert browser_log.refused == []
