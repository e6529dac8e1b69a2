"""The seed's React SPA, replayed in Chromium from http://localhost:3000: its exact calls, its one list."""

import pytest
import requests
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# The SPA's shape: one unpaged list of whatever GET /products returns, and forms whose values are strings.
SPA = """<!doctype html><title>DMarket SPA</title><h1>Products</h1><ul id="products"></ul>
<script>
  window.api = {base: null, token: null};
  const headers = () => ({"Content-Type": "application/json", "Authorization": `Bearer ${api.token}`});
  async function answer(response) { return {status: response.status, body: await response.json()}; }
  window.spa = {
    list: () => fetch(`${api.base}/products`).then(answer).then(r => {
      document.getElementById("products").replaceChildren(...r.body.map(p => {
        const li = document.createElement("li"); li.textContent = p.name; return li;
      }));
      return r;
    }),
    create: (form) => fetch(`${api.base}/products/create`,
        {method: "POST", headers: headers(), body: JSON.stringify(form)}).then(answer),
    update: (product) => fetch(`${api.base}/products/${product.id}/update`,
        {method: "PUT", headers: headers(), body: JSON.stringify(product)}).then(answer),
    remove: (id) => fetch(`${api.base}/products/${id}/delete`, {method: "DELETE", headers: headers()}).then(answer),
  };
</script>"""


def test_the_spa_shows_what_was_just_created_and_saves_a_whole_product_back(page, serve, site, issuer, browser_log):
    spa = site(SPA, port=3000)
    api = serve(RATELIMIT_WRITES="100 per minute").url  # CORS_ORIGINS defaults to http://localhost:3000
    page.goto(spa.origin("localhost"))
    page.evaluate("([base, token]) => { api.base = base; api.token = token; }", [api, issuer.token("auth0|erin")])

    for number in range(1, 61):
        form = {"name": f"Item {number}", "description": "", "price": "12.50", "quantity": "3"}
        assert page.evaluate("form => spa.create(form)", form)["status"] == 201
    listed = page.evaluate("() => spa.list()")
    assert listed["status"] == 200 and len(listed["body"]) == 50
    newest = listed["body"][0]
    assert newest["name"] == "Item 60"
    expect(page.locator("#products li").first).to_have_text("Item 60")  # on screen, without paging

    edited = {**newest, "name": "Item 60, edited", "quantity": "7"}  # read-only fields and all, as the SPA sends
    saved = page.evaluate("product => spa.update(product)", edited)
    assert saved["status"] == 200
    assert saved["body"]["name"] == "Item 60, edited" and saved["body"]["quantity"] == 7
    assert saved["body"]["created_at"] == newest["created_at"] and saved["body"]["user_id"] == "auth0|erin"
    assert requests.get(f"{api}/products/{newest['id']}", timeout=5).json()["quantity"] == 7

    assert page.evaluate("id => spa.remove(id)", newest["id"])["status"] == 200
    page.evaluate("() => spa.list()")
    expect(page.locator("#products li").first).to_have_text("Item 59")
    assert browser_log.errors == [] and browser_log.failed == [] and browser_log.refused == []


def test_the_spa_revalidates_its_list_for_free_and_sees_a_change_at_once(page, serve, site, issuer, browser_log):
    """The SPA's plain fetch, unchanged: Chromium's cache keeps the list (strong ETag, no-cache) and
    asks again with If-None-Match; the API's 304 (through CORS) hands the script the stored answer,
    and any write moves the tag, so the next list is the new one."""
    spa = site(SPA, port=3000)
    api = serve().url
    page.goto(spa.origin("localhost"))
    page.evaluate("([base, token]) => { api.base = base; api.token = token; }", [api, issuer.token("auth0|erin")])
    form = {"name": "Lamp", "description": "", "price": "12.50", "quantity": "3"}
    assert page.evaluate("form => spa.create(form)", form)["status"] == 201
    # What crossed the network, from the browser's own network stack (a revalidated answer reaches
    # the page, and Playwright's events, as the stored 200).
    urls, sent, answered = {}, {}, []
    network = page.context.new_cdp_session(page)
    network.on("Network.requestWillBeSent", lambda event: urls.update({event["requestId"]: event["request"]["url"]}))
    network.on("Network.requestWillBeSentExtraInfo", lambda event: sent.update({event["requestId"]: event["headers"]}))
    network.on("Network.responseReceivedExtraInfo", lambda event: answered.append(event))
    network.send("Network.enable")

    def exchanges() -> list[tuple[str | None, int]]:
        """Each GET /products so far: the If-None-Match the browser sent, and the status the API answered."""
        lists = [event["requestId"] for event in answered if urls.get(event["requestId"]) == f"{api}/products"]
        statuses = {event["requestId"]: event["statusCode"] for event in answered}
        headers = [{name.lower(): value for name, value in sent[request].items()} for request in lists]
        return [(h.get("if-none-match"), statuses[request]) for h, request in zip(headers, lists, strict=True)]

    first = page.evaluate("() => spa.list()")
    again = page.evaluate("() => spa.list()")
    assert first["status"] == again["status"] == 200  # what the script sees: the full answer, both times
    assert again["body"] == first["body"] and [p["name"] for p in again["body"]] == ["Lamp"]
    (_, status), (validator, revalidated) = exchanges()
    assert status == 200 and validator is not None and revalidated == 304

    assert page.evaluate("form => spa.create(form)", {**form, "name": "Desk"})["status"] == 201
    changed = page.evaluate("() => spa.list()")
    assert changed["status"] == 200 and [p["name"] for p in changed["body"]] == ["Desk", "Lamp"]
    assert exchanges()[2] == (validator, 200)  # the same validator asked, and the new list answered
    expect(page.locator("#products li").first).to_have_text("Desk")
    assert browser_log.errors == [] and browser_log.failed == [] and browser_log.refused == []
