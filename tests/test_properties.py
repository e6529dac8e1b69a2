"""Property tests (hypothesis): every valid product round-trips exactly; every invalid one writes nothing."""

import json
from decimal import Decimal
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from app.extensions import db
from app.models import Product
from tests.factories import make_product

PROPERTY_SETTINGS = settings(
    max_examples=75, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)
# Text the rules accept: no control characters (tab, newline, CR are fine), not blank.
text_chars = st.characters(
    blacklist_categories=("Cs",), blacklist_characters=[chr(c) for c in [*range(9), 11, 12, *range(14, 32), 127]]
)
names = st.text(text_chars, min_size=1, max_size=64).filter(lambda s: s.strip())
descriptions = st.none() | st.text(text_chars, max_size=1000)
prices = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("1000000000"), places=2, allow_nan=False)
quantities = st.integers(min_value=0, max_value=2_147_483_647)


@pytest.fixture
def app(make_app):
    """Limits off: hundreds of writes a minute is the point here."""
    return make_app(RATELIMIT_ENABLED="false")


def exact(response) -> dict:
    """The response body with numbers as written on the wire (no float rounding in between)."""
    return json.loads(response.get_data(as_text=True), parse_float=Decimal)


def body_with_price_as_number(product: dict) -> str:
    fields = {k: v for k, v in product.items() if k != "price"}
    return json.dumps(fields)[:-1] + f', "price": {product["price"]}}}'


def count(app) -> int:
    with app.app_context():
        return db.session.query(Product).count()


@given(name=names, description=descriptions, price=prices, quantity=quantities, as_string=st.booleans())
@PROPERTY_SETTINGS
def test_any_valid_product_round_trips_exactly(
    app, client, user_headers, name, description, price, quantity, as_string
):
    product = {"name": name, "description": description, "price": price, "quantity": quantity}
    if as_string:
        body = json.dumps({**product, "price": str(price)})
    else:
        body = body_with_price_as_number(product)
    created = client.post("/products/create", data=body, content_type="application/json", headers=user_headers)
    assert created.status_code == 201, created.get_data(as_text=True)
    expected = {"name": name.strip(), "description": description, "price": price, "quantity": quantity}

    fetched = exact(client.get(f"/products/{created.json['id']}"))
    listed = next(p for p in exact(client.get("/products?sort=-id&per_page=1")) if p["id"] == created.json["id"])
    for seen in (exact(created), fetched, listed):
        assert {k: seen[k] for k in expected} == expected
    with app.app_context():
        stored = db.session.get(Product, created.json["id"])
        assert (stored.name, stored.description, stored.price, stored.quantity) == tuple(expected.values())


VALID = {"name": "Lamp", "description": "A desk lamp", "price": "19.99", "quantity": 3}
invalid_changes = st.one_of(
    st.fixed_dictionaries({"name": st.just("") | st.text(min_size=65, max_size=80) | st.just("   ")}),
    st.fixed_dictionaries({"name": st.text(text_chars, max_size=5).map(lambda s: s + "\x00")}),
    st.fixed_dictionaries({"description": st.text(min_size=1001, max_size=1100)}),
    st.fixed_dictionaries(
        {"price": st.decimals(max_value=Decimal("0"), allow_nan=False, allow_infinity=False).map(str)}
    ),
    st.fixed_dictionaries(
        {
            "price": st.decimals(
                min_value=Decimal("1000000000.01"), allow_nan=False, allow_infinity=False, places=2
            ).map(str)
        }
    ),
    st.fixed_dictionaries(
        {
            "price": st.decimals(min_value=Decimal("0.001"), max_value=Decimal("100"), places=3)
            .filter(lambda d: d != d.quantize(Decimal("0.01")))
            .map(str)
        }
    ),
    st.fixed_dictionaries({"quantity": st.integers(max_value=-1) | st.integers(min_value=2_147_483_648)}),
    st.fixed_dictionaries(
        {
            "quantity": st.booleans()
            | st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: f != int(f))
            | st.text(max_size=5).filter(lambda s: not s.isdigit())
        }
    ),
    st.sampled_from(["name", "price", "quantity"]).map(lambda field: {field: None}),
)


@given(changes=invalid_changes)
@PROPERTY_SETTINGS
def test_any_invalid_product_is_422_and_writes_nothing(app, client, user_headers, changes):
    before = count(app)
    response = client.post("/products/create", json={**VALID, **changes}, headers=user_headers)
    assert response.status_code == 422, (changes, response.get_data(as_text=True))
    assert response.json["code"] == "validation_error"
    assert count(app) == before


# Whatever a client sends, an answer's headers stay within what every proxy in front buffers
# (nginx/client-limits.conf: 16 KB): nothing the client sends is copied into them unbounded.
RESPONSE_HEADER_BUDGET = 12 * 1024
GUNICORN_REQUEST_LINE = 4094  # gunicorn's limit_request_line: no longer request reaches the app
ascii_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=300)
query_items = st.lists(
    st.tuples(
        st.sampled_from(["q", "user_id", "sort", "page", "per_page", "cursor", "next", "x"]),
        st.text(st.characters(blacklist_categories=("Cs",)), max_size=300) | st.sampled_from(["-name", "2", "1"]),
    ),
    max_size=30,
)
client_headers = st.fixed_dictionaries(
    {},
    optional={
        "X-Request-ID": ascii_text,
        "Origin": st.sampled_from(["http://localhost:3000", "https://evil.example"]) | ascii_text,
        "If-None-Match": ascii_text,
        "Access-Control-Request-Method": st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
        "Access-Control-Request-Headers": ascii_text,
        "X-Forwarded-For": ascii_text,
    },
)


@given(
    target=st.sampled_from([("GET", "/products"), ("OPTIONS", "/products"), ("GET", "/products/1"), ("GET", "/login")]),
    items=query_items,
    headers=client_headers,
)
@PROPERTY_SETTINGS
def test_no_query_or_header_grows_an_answers_headers_past_the_budget(app, client, target, items, headers):
    method, path = target
    query = urlencode(items)
    assume(len(f"{method} {path}?{query} HTTP/1.1") <= GUNICORN_REQUEST_LINE)
    if count(app) == 0:
        with app.app_context():
            for i in range(3):
                make_product("auth0|seed", name=f"P{i}")
    response = client.open(f"{path}?{query}", method=method, headers=headers)
    assert response.status_code < 500
    assert sum(len(name) + len(value) + 4 for name, value in response.headers.items()) <= RESPONSE_HEADER_BUDGET


def test_the_longest_link_header_keeps_next_within_its_budget(app, client):
    """A 200-character search of four-byte characters percent-encodes to ~2,400 bytes: four links ~10 KB."""
    term = "abc" + "\U0001f4a1" * 197
    with app.app_context():
        for _ in range(3):
            make_product("auth0|\U0001f4a1", description=term)
    query = {"q": term, "user_id": "auth0|\U0001f4a1", "per_page": 1, "page": 2}
    response = client.get("/products", query_string=query)
    assert response.status_code == 200 and len(response.json) == 1
    links = response.headers["Link"]
    assert len(links) <= 8192
    assert 'rel="next"' in links and 'rel="prev"' in links and 'rel="last"' not in links
