"""Property tests (hypothesis): every valid product round-trips exactly; every invalid one writes nothing."""

import json
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.extensions import db
from app.models import Product

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
