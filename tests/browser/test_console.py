"""Swagger UI as the developer's console, in Chromium: a newcomer's first ten minutes, and a real provider's.

Local mode under `make run` on a port of its own: the printed links, sign-in landing on `next`,
the page naming who is signed in, Try it out creating a product, and the curl command it shows
run as copied. Auth0 mode against oidc-provider: Authorize through the provider's own pages,
then Try it out and the curl. Set DMARKET_SCREENSHOTS=DIR to keep a picture of each step.
"""

import pytest
import requests
from playwright.sync_api import expect

from app import create_app
from tests.browser.conftest import LOCAL
from tests.browser.console import MakeRun, project_copy, run_as_copied, screenshot, shown_curl
from tests.browser.pages import CREATE, CREATE_REST, execute, open_swagger_ui
from tests.live import ROOT, LiveServer, free_port
from tests.oidc.harness import SWAGGER_CLIENT, WEB_CLIENT, OIDCProvider, migrate, one_pass_only

pytestmark = [pytest.mark.browser, pytest.mark.slow]
BANNER = "#dmarket-session"
GET_ONE = "operations-products-getProduct"
LIVE_RESPONSE = ".responses-inner > div:first-child"  # the curl, the request URL and the server's answer
# oidc-provider's pages ask for a web font; nothing outside 127.0.0.1 answers here.
OFFLINE = "fonts.googleapis.com"


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
    screenshot(page, "05-local-try-it-out-201-and-its-curl", f"#{CREATE_REST} {LIVE_RESPONSE}")
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


@pytest.mark.oidc_provider
@one_pass_only
def test_authorize_through_a_real_provider_then_try_it_out_and_its_curl(page, context, settings, tmp_path, browser_log):
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    provider = OIDCProvider(tmp_path, profile="auth0", api_urls=(api,))
    env = {
        **settings,
        "AUTH0_ISSUER": provider.issuer,
        "CLIENT_ID": WEB_CLIENT[0],
        "CLIENT_SECRET": WEB_CLIENT[1],
        "SWAGGER_UI_CLIENT_ID": SWAGGER_CLIENT,
    }
    migrate({**env, "PUBLIC_URL": api})
    provider.start()
    try:
        with LiveServer(env, workers=1, port=port):
            page.goto(f"{api}/openapi/")
            expect(page.locator(BANNER)).to_contain_text("Not signed in.")
            expect(page.locator(BANNER)).to_contain_text("press Authorize to sign in")
            screenshot(page, "11-auth0-swagger-ui-not-signed-in")

            page.get_by_role("button", name="Authorize").first.click()
            dialog = page.locator(".dialog-ux .modal-ux")
            sign_in = dialog.locator(".auth-container", has_text="signIn")
            expect(sign_in).to_contain_text("authorizationCode with PKCE")
            expect(sign_in.get_by_label("client_id:")).to_have_value(SWAGGER_CLIENT)
            screenshot(page, "12-auth0-authorize-dialog")
            with context.expect_page() as opened:
                sign_in.locator("button.authorize").click()
            popup = opened.value
            popup.locator("input[name=login]").fill("carol@example.com")  # the provider's own login page
            popup.locator("input[name=password]").fill("any password")
            screenshot(popup, "13-auth0-provider-login-page")
            popup.get_by_role("button", name="Sign-in").click()
            with popup.expect_event("close"):  # armed first: the popup may close before a later wait begins
                popup.get_by_role("button", name="Continue").click()  # its consent page
            expect(sign_in.locator("button", has_text="Logout")).to_be_visible()
            screenshot(page, "14-auth0-authorized")
            sign_in.locator("button.btn-done").click()
            expect(page.locator(BANNER).locator("[data-user]")).to_have_text("carol@example.com")
            expect(page.locator(BANNER)).to_contain_text("by an access token from the identity provider")
            screenshot(page, "15-auth0-swagger-ui-authorized-as")

            status, created = execute(page, CREATE_REST)
            assert status == 201 and created["user_id"] == "carol@example.com"
            command = shown_curl(page, CREATE_REST)
            assert "-H 'Authorization: Bearer ey" in command
            screenshot(page, "16-auth0-try-it-out-201-and-its-curl", f"#{CREATE_REST} {LIVE_RESPONSE}")
            status, body = run_as_copied(command, tmp_path)
            assert status == 201, body
            assert requests.get(f"{api}/products?per_page=5", timeout=5).json()[0]["user_id"] == "carol@example.com"
    finally:
        provider.stop()
    assert browser_log.errors == []
    assert [failure for failure in browser_log.failed if OFFLINE not in failure] == []
    assert browser_log.refused == []


def test_refusals_say_what_to_do_in_swagger_ui(page, serve, browser_log):
    """Local mode: a 401 names the sign-in page and `flask auth token`; an expired token, to sign in again;
    a path id that is not one, the rule."""
    server = serve(**LOCAL)
    api = server.url
    open_swagger_ui(page, api)

    status, refused = execute(page, CREATE, {"name": "Lamp", "price": 5, "quantity": 1})
    assert status == 401 and refused["code"] == "unauthorized"
    assert f"sign in at {api}/login" in refused["message"] and "flask auth token EMAIL" in refused["message"]
    screenshot(page, "21-401-not-signed-in", f"#{CREATE} {LIVE_RESPONSE}")

    expired = mint_expired(server)
    page.get_by_role("button", name="Authorize").first.click()
    dialog = page.locator(".dialog-ux .modal-ux")
    dialog.locator(".auth-container input").fill(expired)
    dialog.locator(".auth-btn-wrapper button.authorize").click()
    dialog.locator("button", has_text="Logout").wait_for()  # authorized (a busy CI machine is slow to get there)
    dialog.locator(".auth-btn-wrapper button.btn-done").click()
    status, refused = execute(page, CREATE, {"name": "Lamp", "price": 5, "quantity": 1})
    assert status == 401 and refused["code"] == "invalid_token"
    assert refused["message"].startswith(
        f"The access token was rejected: the token has expired. To get a valid one, sign in again at {api}/login"
    )
    screenshot(page, "22-401-expired-token", f"#{CREATE} {LIVE_RESPONSE}")

    block = page.locator(f"#{GET_ONE}")
    block.locator(".opblock-summary").first.click()
    block.locator("button.try-out__btn").click()
    block.locator("input[placeholder='product_id']").fill("abc")
    block.locator("button.execute").click()
    # Swagger UI checks an integer before sending it; the parameter it shows states the rule.
    expect(block.locator(".parameters")).to_contain_text("a whole number from 1 to 2147483647")
    block.locator(".parameters").scroll_into_view_if_needed()
    screenshot(page, "23-path-id-in-swagger-ui")
    answer = page.evaluate("() => fetch('/products/abc').then(async r => [r.status, await r.json()])")
    assert answer == [
        422,
        {
            "code": "validation_error",
            "message": "The request is not valid.",
            "details": [{"field": "product_id", "reason": "Product ids are whole numbers from 1 to 2147483647."}],
        },
    ]
    page.goto(f"{api}/products/0")
    expect(page.locator("body")).to_contain_text("Product ids are whole numbers from 1 to 2147483647.")
    screenshot(page, "24-path-id-out-of-range-in-the-browser")
    assert browser_log.errors == []


def mint_expired(server) -> str:
    """A token the server's local issuer signed, two minutes past its expiry (gunicorn's instance/ key)."""
    app = create_app({**server.env, "INSTANCE_PATH": str(ROOT / "instance")})
    return app.extensions["dmarket.auth"]["local_issuer"].mint(email="late@example.com", ttl=-120)
