"""What a person does on the API's pages, as steps the browser tests share."""

import json

from playwright.sync_api import Page, expect

CREATE = "operations-products-createProduct"
CREATE_REST = "operations-products-createProductRest"
ME = "operations-users-getMe"
# The local server's sign-in code (LOCAL_SIGNIN_CODE): a person opens the logged link, which carries it.
SIGNIN_CODE = "browser-signin-code"


def sign_in_locally(page: Page, api: str, email: str) -> str:
    """The link the server logs (its sign-in code prefilled), the form filled and submitted: 303 to Swagger UI,
    which names the user and authorizes itself with a token minted for them; returns that token."""
    page.goto(f"{api}/login?code={SIGNIN_CODE}&next=/openapi/")
    page.get_by_label("Email").fill(email)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{api}/openapi/")
    expect(page.locator("#dmarket-session [data-user]")).to_have_text(email)
    return page.evaluate("() => window.ui.authSelectors.authorized().toJS().bearerAuth.value")


def open_swagger_ui(page: Page, api: str) -> None:
    page.goto(f"{api}/openapi")
    expect(page.locator(f"#{CREATE}")).to_be_visible()


def execute(page: Page, operation: str, body: dict | None = None) -> tuple[int, dict]:
    """Expand an operation, "Try it out", (fill the body), "Execute": the status and JSON Swagger UI shows."""
    block = page.locator(f"#{operation}")
    if not block.locator(".opblock-body").is_visible():
        block.locator(".opblock-summary").first.click()
    try_out = block.locator("button.try-out__btn").first  # "Cancel" and "Reset" once tried out
    if try_out.inner_text().strip() == "Try it out":
        try_out.click()
    if body is not None:
        block.locator("textarea.body-param__text").fill(json.dumps(body))
    block.locator("button.execute").click()
    status = block.locator(".live-responses-table .response .response-col_status")
    expect(status).to_be_visible()
    text = block.locator(".live-responses-table .response .response-col_description pre").first.inner_text()
    return int(status.inner_text().strip()), json.loads(text)
