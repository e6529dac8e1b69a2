"""Pages on other origins, in Chromium: an allowed origin reads and writes; any other cannot."""

import pytest
import requests

from tests.browser.conftest import LOCAL
from tests.browser.pages import sign_in_locally

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# What a page's script does: a call, and what the script could see of the answer.
CALL = """async ([url, init]) => {
    try {
        const response = await fetch(url, init);
        return {status: response.status, body: await response.text()};
    } catch (error) {
        return {blocked: String(error)};
    }
}"""
JSON = {"Content-Type": "application/json"}


def call(page, url, **init):
    return page.evaluate(CALL, [url, init])


def total(api: str) -> int:
    return int(requests.get(f"{api}/products", timeout=5).headers["X-Total-Count"])


def test_an_allowed_origin_reads_and_writes_another_origin_cannot(page, serve, site):
    allowed, stranger = site(), site()
    api = serve(**LOCAL, CORS_ORIGINS=allowed.origin()).url
    token = sign_in_locally(page, api, "cors@example.com")
    lamp = '{"name": "Lamp", "price": 5, "quantity": 1}'

    page.goto(allowed.origin())
    me = call(page, f"{api}/me", credentials="include")
    assert me["status"] == 200 and "cors@example.com" in me["body"]
    by_cookie = call(page, f"{api}/products/create", method="POST", credentials="include", headers=JSON, body=lamp)
    assert by_cookie["status"] == 201
    by_token = call(
        page, f"{api}/products", method="POST", headers={**JSON, "Authorization": f"Bearer {token}"}, body=lamp
    )
    assert by_token["status"] == 201
    assert total(api) == 2

    page.goto(stranger.origin())  # same site (127.0.0.1), so the browser still sends the cookie
    assert "blocked" in call(page, f"{api}/me", credentials="include")
    assert "blocked" in call(page, f"{api}/products")  # not even public data is readable
    json_write = call(page, f"{api}/products/create", method="POST", credentials="include", headers=JSON, body=lamp)
    assert "blocked" in json_write  # the preflight is refused: the POST is never sent
    # A "simple" request needs no preflight and does reach the API: the Origin check refuses it.
    with page.expect_response(f"{api}/products/create") as answer:
        simple = call(page, f"{api}/products/create", method="POST", credentials="include", mode="no-cors", body=lamp)
    assert simple == {"status": 0, "body": ""}  # opaque: nothing readable
    assert answer.value.status == 403  # the cookie came along; the Origin check refused it
    assert total(api) == 2
