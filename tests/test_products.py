"""The products resource, as a client sees it: status, body, headers and what is stored."""

import base64
import hashlib
import json
import re
import time
from contextlib import contextmanager
from decimal import Decimal
from unittest.mock import patch

import pytest
from itsdangerous import Signer
from sqlalchemy import event, text, update

from app.extensions import db
from app.models import Product
from app.services import products as products_service
from app.services.prepared import PreparedRead
from tests.factories import make_product

LAMP = {"name": "Lamp", "description": "A desk lamp", "price": 19.99, "quantity": 3}


def stored(app, product_id: int) -> Product | None:
    with app.app_context():
        return db.session.get(Product, product_id)


def count(app) -> int:
    with app.app_context():
        return db.session.query(Product).count()


def seed(app, *products: dict) -> list[int]:
    with app.app_context():
        return [make_product(**fields).id for fields in products]


class TestList:
    def test_empty_table_is_an_empty_array(self, client):
        response = client.get("/products")
        assert response.status_code == 200
        assert response.json == []
        assert response.headers["X-Total-Count"] == "0"

    def test_products_are_listed_with_every_field(self, app, client):
        (product_id,) = seed(app, {"name": "Lamp", "price": Decimal("19.99"), "quantity": 3})
        (item,) = client.get("/products").json
        assert item["id"] == product_id
        assert item["price"] == 19.99
        assert set(item) == {"id", "name", "description", "price", "quantity", "user_id", "created_at", "updated_at"}
        assert item["created_at"].endswith("Z")

    def test_pagination_headers(self, app, client):
        seed(app, *[{"name": f"P{i}"} for i in range(5)])
        response = client.get("/products?page=2&per_page=2")
        assert [p["name"] for p in response.json] == ["P2", "P1"]  # newest first by default
        assert response.headers["X-Total-Count"] == "5"
        links = response.headers["Link"]
        assert '</products?page=1&per_page=2>; rel="first"' in links
        assert '</products?page=1&per_page=2>; rel="prev"' in links
        assert '</products?page=3&per_page=2>; rel="next"' in links
        assert '</products?page=3&per_page=2>; rel="last"' in links

    def test_numbered_pages_stop_at_100_and_the_cursor_goes_on(self, app, client):
        seed(app, *[{"name": f"P{i}"} for i in range(102)])
        response = client.get("/products?page=100&per_page=1")
        assert [p["name"] for p in response.json] == ["P2"]
        assert response.headers["X-Total-Count"] == "102"  # the total stays exact
        assert '</products?page=100&per_page=1>; rel="last"' in response.headers["Link"]
        assert client.get("/products?page=101&per_page=1").status_code == 422
        walked = client.get("/products", query_string={"per_page": 1, "cursor": response.headers["X-Next-Cursor"]})
        assert [p["name"] for p in walked.json] == ["P1"]

    def test_links_are_relative_whatever_the_host_header_says(self, app, client):
        seed(app, *[{"name": f"P{i}"} for i in range(3)])
        links = client.get("/products?per_page=1", headers={"Host": "evil.example"}).headers["Link"]
        assert "evil.example" not in links
        assert all(link.startswith("</products?") for link in links.split(", "))

    def test_a_plain_listing_starts_with_the_newest_at_any_size(self, app, client, user_headers):
        """The SPA lists with no parameters and has no paging: what was just created must be on that page."""
        seed(app, *[{"name": f"P{i}"} for i in range(60)])
        created = client.post("/products/create", json=LAMP, headers=user_headers).json
        response = client.get("/products")
        assert response.status_code == 200
        assert response.headers["X-Total-Count"] == "61"
        assert len(response.json) == 50
        assert response.json[0]["id"] == created["id"] and response.json[0]["name"] == "Lamp"
        assert [p["id"] for p in response.json] == sorted((p["id"] for p in response.json), reverse=True)
        assert stored(app, created["id"]).name == "Lamp"

    def test_ascending_order_is_still_one_parameter_away(self, app, client):
        ids = seed(app, *[{"name": f"P{i}"} for i in range(3)])
        assert [p["id"] for p in client.get("/products?sort=id").json] == ids

    def test_links_keep_the_filters(self, app, client):
        seed(app, {"name": "Red lamp"}, {"name": "Red chair"})
        links = client.get("/products?q=red&per_page=1&sort=-name").headers["Link"]
        assert '</products?q=red&per_page=1&sort=-name&page=2>; rel="next"' in links

    def test_a_page_past_the_end_is_empty(self, app, client):
        seed(app, {"name": "Lamp"})
        response = client.get("/products?page=9")
        assert response.json == []
        assert response.headers["X-Total-Count"] == "1"

    def test_default_page_size_is_50(self, app, client):
        seed(app, *[{"name": f"P{i}"} for i in range(51)])
        assert len(client.get("/products").json) == 50

    def test_search_is_case_insensitive_over_name_and_description(self, app, client):
        seed(
            app,
            {"name": "Desk LAMP", "description": None},
            {"name": "Chair", "description": "goes with a lamp"},
            {"name": "Table", "description": "oak"},
        )
        response = client.get("/products?q=lamp")
        assert sorted(p["name"] for p in response.json) == ["Chair", "Desk LAMP"]
        assert response.headers["X-Total-Count"] == "2"

    def test_search_treats_wildcards_literally(self, app, client):
        seed(app, {"name": "100% cotton"}, {"name": "1000 cottons"})
        assert [p["name"] for p in client.get("/products?q=100%25").json] == ["100% cotton"]
        assert client.get("/products?q=100_").json == []  # `_` is no wildcard either

    @pytest.mark.parametrize(
        "q, names",
        [
            ("condition lamp", ["Condition lamp", "Desk"]),
            ("t-shirt", ["Red T-shirt"]),
            ("100% cotton", ["100% cotton"]),
            ("100_ cotton", []),
            ("24/7 help", ["24/7 help desk"]),
        ],
    )
    def test_a_phrase_matches_only_where_it_stands_as_typed(self, app, client, q, names):
        """Words apart, in the other order, or joined by a `q` (how the phrase indexes read a
        separator) do not match; `%`, `_` and `/` (the escape character) are literal."""
        texts = ["Condition lamp", "Lamp in condition, lamp", "Lamp, good condition", "conditionQlamp"]
        texts += ["Red T-shirt", "T shirt", "tqshirt", "100% cotton", "1000 cotton", "100%qcotton"]
        texts += ["24/7 help desk", "24q7 help", "24/7qhelp"]
        seed(
            app,
            {"name": "Desk", "description": "Good CONDITION LAMP"},
            *({"name": t, "description": None} for t in texts),
        )
        response = client.get("/products", query_string={"q": q})
        assert response.status_code == 200
        assert sorted(p["name"] for p in response.json) == names

    @pytest.mark.parametrize("q", ['"best"', "lamp OR", "NEAR(a b)", "NEAR(a b) a*", "AMP", "amp o"])
    def test_search_reads_every_character_literally(self, app, client, q):
        """Quotes, operators and short terms are text to find, never a query language."""
        seed(app, {"name": 'The "best" lamp OR', "description": "NEAR(a b) a*"}, {"name": "Chair", "description": None})
        response = client.get("/products", query_string={"q": q})
        assert response.status_code == 200
        assert [p["name"] for p in response.json] == ['The "best" lamp OR']

    @pytest.mark.parametrize("q", ["a", "am", "a b", "__%", "   ", "ab cd", "a*b*c"])
    def test_a_term_without_three_letters_or_digits_in_a_row_is_422(self, app, client, q):
        """No index can seek on such a term: it would read every row (the review's `q=am`, `q=a`)."""
        seed(app, {"name": "ab cd am"})
        response = client.get("/products", query_string={"q": q})
        assert response.status_code == 422
        assert response.json["code"] == "validation_error"
        assert [d["field"] for d in response.json["details"]] == ["q"]

    @pytest.mark.parametrize("q", ["", "abc", "a b c12", "écl", "100%", "ab", "a\u00e9b"])
    def test_the_spec_states_which_search_terms_are_accepted(self, app, client, q):
        """The published pattern and the validator agree; an empty term is no search at all."""
        spec = client.get("/openapi/openapi.json").json["paths"]["/products"]["get"]["parameters"]
        (schema,) = [p["schema"] for p in spec if p["name"] == "q"]
        response = client.get("/products", query_string={"q": q})
        assert response.status_code == (200 if re.fullmatch(schema["pattern"], q) else 422)

    def test_a_search_lists_only_its_newest_matches_and_says_so(self, app, client, monkeypatch):
        """Counting and sorting are bounded by SEARCH_MATCH_LIMIT, however many rows match."""
        monkeypatch.setattr("app.services.products.SEARCH_MATCH_LIMIT", 3)
        ids = seed(app, *({"name": f"Lamp {n}"} for n in "edcba"), {"name": "Chair", "description": None})
        response = client.get("/products?q=lamp&sort=name")
        assert response.status_code == 200
        assert [p["name"] for p in response.json] == ["Lamp a", "Lamp b", "Lamp c"]  # the 3 newest, sorted
        assert response.headers["X-Total-Count"] == "3"
        assert response.headers["X-Search-Truncated"] == "true"
        assert {p["id"] for p in response.json} == set(ids[2:5])
        assert "X-Search-Truncated" not in client.get("/products?q=chair").headers
        assert client.get("/products?q=chair").headers["X-Total-Count"] == "1"

    def test_a_search_within_the_limit_is_complete(self, app, client, monkeypatch):
        monkeypatch.setattr("app.services.products.SEARCH_MATCH_LIMIT", 3)
        seed(app, *({"name": f"Lamp {n}"} for n in "abc"))
        response = client.get("/products?q=lamp&sort=-name")
        assert [p["name"] for p in response.json] == ["Lamp c", "Lamp b", "Lamp a"]
        assert response.headers["X-Total-Count"] == "3" and "X-Search-Truncated" not in response.headers

    def test_a_search_by_owner_is_bounded_too(self, app, client, monkeypatch):
        monkeypatch.setattr("app.services.products.SEARCH_MATCH_LIMIT", 2)
        seed(app, *({"name": f"Lamp {n}", "owner": "auth0|bob"} for n in "abc"), {"name": "Lamp d"})
        response = client.get("/products", query_string={"q": "lamp", "user_id": "auth0|bob"})
        assert [p["name"] for p in response.json] == ["Lamp c", "Lamp b"]  # the newest two, newest first
        assert response.headers["X-Search-Truncated"] == "true"

    def test_search_folds_accented_capitals_too(self, app, client):
        seed(app, {"name": "ÉCLAIR tray", "description": None}, {"name": "Eclair plate", "description": None})
        assert [p["name"] for p in client.get("/products?q=écl").json] == ["ÉCLAIR tray"]

    def test_search_follows_renames_and_deletes(self, app, client, user_headers):
        lamp, chair = seed(app, {"name": "Brass lamp", "description": None}, {"name": "Oak chair", "description": None})
        client.put(f"/products/{lamp}/update", json={"name": "Brass sconce"}, headers=user_headers)
        client.put(f"/products/{chair}/update", json={"quantity": 9}, headers=user_headers)
        assert client.get("/products?q=lamp").json == []
        assert [p["id"] for p in client.get("/products?q=sconce").json] == [lamp]
        assert [p["id"] for p in client.get("/products?q=chair").json] == [chair]
        client.delete(f"/products/{chair}/delete", headers=user_headers)
        assert client.get("/products?q=chair").json == []
        assert client.get("/products?q=chair").headers["X-Total-Count"] == "0"
        assert stored(app, lamp).name == "Brass sconce" and stored(app, chair) is None

    def test_filter_by_owner(self, app, client):
        seed(app, {"owner": "auth0|alice", "name": "A"}, {"owner": "auth0|bob", "name": "B"})
        response = client.get("/products?user_id=auth0|bob")
        assert [p["name"] for p in response.json] == ["B"]

    @pytest.mark.parametrize(
        "sort, expected",
        [
            ("id", ["b", "c", "a"]),
            ("-id", ["a", "c", "b"]),
            ("name", ["a", "b", "c"]),
            ("-name", ["c", "b", "a"]),
            ("price", ["c", "a", "b"]),
            ("-price", ["b", "a", "c"]),
        ],
    )
    def test_sorting(self, app, client, sort, expected):
        seed(
            app,
            {"name": "b", "price": Decimal("30")},
            {"name": "c", "price": Decimal("10")},
            {"name": "a", "price": Decimal("20")},
        )
        assert [p["name"] for p in client.get(f"/products?sort={sort}").json] == expected

    def test_sorting_by_creation_time_breaks_ties_by_id(self, app, client):
        ids = seed(app, {"name": "x"}, {"name": "y"})
        assert [p["id"] for p in client.get("/products?sort=-created_at").json] == ids[::-1]

    @pytest.mark.parametrize(
        "query, field",
        [
            ("page=0", "page"),
            ("page=101", "page"),  # deeper lists are walked by cursor
            ("page=abc", "page"),
            ("per_page=101", "per_page"),
            ("per_page=0", "per_page"),
            ("sort=owner", "sort"),
            ("q=" + "x" * 201, "q"),
            ("q=%00", "q"),
            ("color=red", "color"),
        ],
    )
    def test_bad_query_values_are_422(self, client, query, field):
        response = client.get(f"/products?{query}")
        assert response.status_code == 422
        assert response.json["code"] == "validation_error"
        assert [d["field"] for d in response.json["details"]] == [field]


def _payload(data) -> str:
    """A cursor's payload as the reviewer re-encoded it by hand: base64url of the JSON, no padding."""
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


HOSTILE_CURSORS = [
    ("id", "3", 12345678901234567890),  # a 20-digit id
    ("id", "12345678901234567890", 3),
    ("id", "3", True),
    ("name", "a", "3"),
    ("name", "\ud800", 3),  # a lone surrogate
    ("name", "a\x00b", 3),  # NUL
    ("name", ["a"], 3),
    ("price", "sNaN", 3),
    ("price", "NaN", 3),
    ("price", "Infinity", 3),
    ("price", "1e999999", 3),
    ("price", "-5", 3),
    ("created_at", "2026-01-01T00:00:00", 3),  # naive
    ("created_at", "2026-01-01", 3),  # a bare date
    ("created_at", "0001-01-01T00:00:00+14:00", 3),  # before year 1 in UTC
    ("created_at", "9999-12-31T23:59:59-14:00", 3),  # after year 9999 in UTC
    ("created_at", "not a time", 3),
]


class TestCursors:
    @pytest.fixture
    def catalogue(self, app):
        """Duplicate names and prices, so ties must be broken by id exactly as pages do."""
        names = ["b", "a", "c", "a", "b", "d", "a", "c"]
        return seed(app, *({"name": n, "price": Decimal(10 + i % 3)} for i, n in enumerate(names)))

    @pytest.mark.parametrize("sort", ["id", "-id", "name", "-name", "price", "-price", "created_at", "-created_at"])
    def test_walking_by_cursor_gives_the_same_rows_as_pages(self, client, catalogue, sort):
        by_page = [p["id"] for n in (1, 2, 3) for p in client.get(f"/products?sort={sort}&per_page=3&page={n}").json]
        walked, cursor = [], ""
        while True:
            response = client.get(f"/products?sort={sort}&per_page=3" + (f"&cursor={cursor}" if cursor else ""))
            walked += [p["id"] for p in response.json]
            cursor = response.headers.get("X-Next-Cursor")
            if not cursor:
                break
        assert walked == by_page and len(walked) == 8

    def test_cursor_pages_have_a_next_link_and_no_total(self, client, catalogue):
        first = client.get("/products?per_page=3&q=lamp")
        cursor = first.headers["X-Next-Cursor"]
        second = client.get(f"/products?per_page=3&q=lamp&cursor={cursor}")
        assert "X-Total-Count" not in second.headers
        assert f"cursor={cursor}" not in second.headers["Link"]
        assert 'rel="next"' in second.headers["Link"] and "q=lamp" in second.headers["Link"]

    def test_a_cursor_after_the_longest_non_ascii_name_can_be_sent_back(self, app, client):
        """64 four-byte characters: as \\u escapes the cursor took ~1,100 characters, past what it may be."""
        seed(app, {"name": "\U0001f4a1" * 64}, {"name": "\U0001f4a1" * 63 + "a"})
        first = client.get("/products?sort=name&per_page=1")
        cursor = first.headers["X-Next-Cursor"]
        assert len(cursor) <= 512
        second = client.get("/products", query_string={"sort": "name", "per_page": 1, "cursor": cursor})
        assert second.status_code == 200
        assert [p["name"] for p in first.json + second.json] == ["\U0001f4a1" * 63 + "a", "\U0001f4a1" * 64]

    def test_the_last_page_has_no_next_cursor(self, client, catalogue):
        assert "X-Next-Cursor" not in client.get("/products?per_page=8").headers

    @pytest.mark.parametrize("cursor", ["garbage", "eyJzIjoiaWQifQ", "e30", "x" * 513, "not+base64/"])
    def test_a_cursor_we_did_not_give_out_is_422(self, client, catalogue, cursor):
        response = client.get(f"/products?cursor={cursor}")
        assert response.status_code == 422
        assert response.json["details"][0]["field"].endswith("cursor")

    def test_a_cursor_is_only_valid_for_its_sort_order(self, client, catalogue):
        cursor = client.get("/products?per_page=3&sort=name").headers["X-Next-Cursor"]
        assert client.get(f"/products?sort=price&cursor={cursor}").status_code == 422

    def test_a_cursor_is_payload_dot_signature_as_the_spec_says(self, app, client, catalogue):
        cursor = client.get("/products?per_page=3").headers["X-Next-Cursor"]
        pattern = app.test_client().get("/openapi/openapi.json").json["paths"]["/products"]["get"]["parameters"]
        (spec,) = [p["schema"] for p in pattern if p["name"] == "cursor"]
        assert re.fullmatch(spec["pattern"], cursor) and len(cursor) <= spec["maxLength"]
        assert not re.search(spec["pattern"], "0")  # a fuzzer's schema-valid example is now outside the schema
        assert client.get("/products?cursor=0").status_code == 422

    def test_an_edited_or_foreign_cursor_is_422(self, app, client, catalogue):
        cursor = client.get("/products?per_page=3").headers["X-Next-Cursor"]
        payload, signature = cursor.split(".")
        edited = _payload({"s": "id", "v": "1", "id": 1}) + "." + signature
        foreign = Signer("another-secret", salt="dmarket.cursor", digest_method=hashlib.sha256).sign(payload).decode()
        for bad in (edited, foreign, payload, cursor[:-1] + ("A" if cursor[-1] != "A" else "B")):
            response = client.get(f"/products?cursor={bad}")
            assert response.status_code == 422
            assert response.json["code"] == "validation_error"
            assert bad not in response.get_data(as_text=True)

    @pytest.mark.parametrize("sort, value, row_id", HOSTILE_CURSORS)
    def test_hand_made_cursors_from_the_review_are_422_not_500(self, client, catalogue, sort, value, row_id):
        """The reviewer's forgeries: decoded by hand, re-encoded with values the database would choke on."""
        response = client.get(f"/products?sort={sort}&cursor={_payload({'s': sort, 'v': value, 'id': row_id})}")
        assert response.status_code == 422
        assert response.json["code"] == "validation_error"
        assert [d["field"] for d in response.json["details"]] == ["cursor"]

    @pytest.mark.parametrize("sort, value, row_id", HOSTILE_CURSORS)
    def test_hostile_values_are_422_even_when_signed(self, app, client, catalogue, sort, value, row_id):
        """Defence in depth: with the key leaked, a signed cursor still cannot make the database fail."""
        with app.app_context():
            signer = Signer(app.config["SECRET_KEY"], salt="dmarket.cursor", digest_method=hashlib.sha256)
        cursor = signer.sign(_payload({"s": sort, "v": value, "id": row_id})).decode()
        response = client.get(f"/products?sort={sort}&cursor={cursor}")
        assert response.status_code == 422
        assert [d["field"] for d in response.json["details"]] == ["cursor"]
        assert client.get(f"/products?sort={sort}&per_page=3").status_code == 200  # and nothing was left broken


class TestGet:
    def test_get_one_with_etag(self, app, client):
        (product_id,) = seed(app, {"name": "Lamp"})
        response = client.get(f"/products/{product_id}")
        assert response.status_code == 200
        assert response.json["name"] == "Lamp"
        assert response.headers["ETag"] == '"1"'

    def test_unknown_product_is_404(self, client):
        response = client.get("/products/12345")
        assert response.status_code == 404
        assert response.json == {"code": "not_found", "message": "The product was not found."}

    @pytest.mark.parametrize(
        "product_id", ["99999999999999999999", "2147483648", "0", "-1", "abc", "1.5", "1e3", "%20", "0x1F"]
    )
    def test_an_id_that_breaks_the_rule_is_a_422_naming_it(self, client, product_id):
        response = client.get(f"/products/{product_id}")
        assert response.status_code == 422
        assert response.json == {
            "code": "validation_error",
            "message": "The request is not valid.",
            "details": [{"field": "product_id", "reason": "Product ids are whole numbers from 1 to 2147483647."}],
        }

    @pytest.mark.parametrize("method", ["put", "patch", "delete"])
    def test_writes_name_the_rule_too(self, client, user_headers, method):
        response = getattr(client, method)("/products/abc", json={"name": "x"}, headers=user_headers)
        assert response.status_code == 422
        assert response.json["details"] == [
            {"field": "product_id", "reason": "Product ids are whole numbers from 1 to 2147483647."}
        ]

    def test_the_largest_id_is_valid_and_merely_unknown(self, client):
        assert client.get("/products/2147483647").json["code"] == "not_found"

    def test_get_on_the_create_path_stays_405(self, client):
        response = client.get("/products/create")
        assert response.status_code == 405 and set(response.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}

    def test_the_document_states_the_rule(self, client):
        spec = client.get("/openapi/openapi.json").json
        for path, item in spec["paths"].items():
            for operation in item.values():
                for parameter in operation["parameters"]:
                    if parameter["name"] == "product_id":
                        assert parameter["in"] == "path" and "1 to 2147483647" in parameter["description"], path
                        assert parameter["schema"]["minimum"] == 1 and parameter["schema"]["maximum"] == 2147483647
                        assert "422" in operation["responses"]


class TestCreate:
    def test_created_for_the_caller(self, app, client, user_headers):
        response = client.post("/products/create", json=LAMP, headers=user_headers)
        assert response.status_code == 201
        body = response.json
        assert body["name"] == "Lamp" and body["price"] == 19.99 and body["quantity"] == 3
        assert body["user_id"] == "auth0|alice"
        assert response.headers["Location"] == f"/products/{body['id']}"
        assert response.headers["ETag"] == '"1"'
        product = stored(app, body["id"])
        assert (product.name, product.price, product.user_id) == ("Lamp", Decimal("19.99"), "auth0|alice")

    def test_client_cannot_choose_owner_id_or_version(self, app, client, user_headers):
        body = {**LAMP, "user_id": "auth0|bob", "id": 999, "version": 7, "created_at": "2000-01-01T00:00:00Z"}
        response = client.post("/products/create", json=body, headers=user_headers)
        assert response.status_code == 201
        product = stored(app, response.json["id"])
        assert product.user_id == "auth0|alice"
        assert product.id != 999 and product.version == 1
        assert product.created_at.year > 2000

    def test_name_is_trimmed_and_description_optional(self, app, client, user_headers):
        response = client.post(
            "/products/create", json={"name": "  Lamp  ", "price": 5, "quantity": 0}, headers=user_headers
        )
        assert response.status_code == 201
        assert response.json["name"] == "Lamp"
        assert response.json["description"] is None

    @pytest.mark.parametrize(
        "price, exact",
        [
            (19.99, "19.99"),
            (0.01, "0.01"),
            (1000000000, "1000000000"),
            ("12.50", "12.50"),
            (999999999.99, "999999999.99"),
        ],
    )
    def test_prices_are_exact(self, app, client, user_headers, price, exact):
        response = client.post("/products/create", json={**LAMP, "price": price}, headers=user_headers)
        assert response.status_code == 201
        assert response.json["price"] == float(exact)
        assert stored(app, response.json["id"]).price == Decimal(exact)

    def test_a_price_with_many_digits_is_not_rounded_into_validity(self, app, client, user_headers):
        body = '{"name": "Lamp", "price": 19.999999999999999999, "quantity": 1}'
        response = client.post("/products/create", data=body, content_type="application/json", headers=user_headers)
        assert response.status_code == 422
        assert count(app) == 0

    @pytest.mark.parametrize(
        "changes, field",
        [
            ({"name": ""}, "name"),
            ({"name": "   "}, "name"),
            ({"name": "x" * 65}, "name"),
            ({"name": "\u200b"}, "name"),  # invisible characters only: as blank as spaces
            ({"name": "\u2060\ufeff"}, "name"),
            ({"name": " \u200b\u3000\u00a0 "}, "name"),
            ({"name": "\u3164"}, "name"),  # a Hangul filler
            ({"name": "\U000e0020"}, "name"),  # a tag character
            ({"name": "bad\x00name"}, "name"),
            ({"name": "Lamp \ud800"}, "name"),  # a lone surrogate: JSON can spell it, no database stores it
            ({"description": "\udfff"}, "description"),
            ({"name": None}, "name"),
            ({"description": "x" * 1001}, "description"),
            ({"price": 0}, "price"),
            ({"price": -5}, "price"),
            ({"price": 1.234}, "price"),
            ({"price": 1000000000.01}, "price"),
            ({"price": "free"}, "price"),
            ({"price": "1e3"}, "price"),
            ({"quantity": -1}, "quantity"),
            ({"quantity": 1.5}, "quantity"),
            ({"quantity": "many"}, "quantity"),
            ({"quantity": 2**31}, "quantity"),
        ],
    )
    def test_invalid_fields_are_422_with_details(self, app, client, user_headers, changes, field):
        response = client.post("/products/create", json={**LAMP, **changes}, headers=user_headers)
        assert response.status_code == 422
        assert response.json["code"] == "validation_error"
        assert field in [d["field"] for d in response.json["details"]]
        assert count(app) == 0

    @pytest.mark.parametrize(
        "name", ["\u200b", "\u2060", "\ufeff", " \u200b ", "\u3164", "\u200bLamp", "Lamp\u2060", "é"]
    )
    def test_the_spec_states_which_names_are_blank(self, app, client, user_headers, name):
        """The published pattern and the validator agree, so clients (and fuzzers) know what is accepted."""
        spec = client.get("/openapi/openapi.json").json["components"]["schemas"]["ProductIn"]["properties"]["name"]
        response = client.post("/products/create", json={**LAMP, "name": name}, headers=user_headers)
        assert response.status_code == (201 if re.fullmatch(spec["pattern"], name) else 422)
        assert count(app) == (1 if response.status_code == 201 else 0)

    def test_missing_fields_are_all_reported(self, client, user_headers):
        response = client.post("/products/create", json={}, headers=user_headers)
        assert response.status_code == 422
        assert sorted(d["field"] for d in response.json["details"]) == ["name", "price", "quantity"]

    def test_validation_errors_never_echo_the_input(self, client, user_headers):
        secret = "<script>alert('s3cr3t')</script>" * 3
        response = client.post(
            "/products/create", json={"name": secret, "price": secret, "quantity": secret}, headers=user_headers
        )
        assert response.status_code == 422
        assert "s3cr3t" not in response.get_data(as_text=True)

    def test_body_must_be_json(self, app, client, user_headers):
        response = client.post("/products/create", data="name=Lamp&price=1", headers=user_headers)
        assert response.status_code == 415
        assert response.json["code"] == "unsupported_media_type"
        assert count(app) == 0

    @pytest.mark.parametrize("body", ["{bad", '{"name": "a", "price": NaN, "quantity": 1}', "[1, 2", ""])
    def test_malformed_json_is_400(self, client, user_headers, body):
        response = client.post("/products/create", data=body, content_type="application/json", headers=user_headers)
        assert response.status_code == 400
        assert response.json["code"] == "invalid_json"

    @pytest.mark.parametrize("body", ["[]", '"text"', "42", "null"])
    def test_body_must_be_an_object(self, client, user_headers, body):
        response = client.post("/products/create", data=body, content_type="application/json", headers=user_headers)
        assert response.status_code == 422
        assert response.json["details"] == [{"field": "body", "reason": "must be a JSON object"}]

    def test_oversize_body_is_413(self, app, client, user_headers):
        body = {**LAMP, "description": "x" * (65 * 1024)}
        response = client.post("/products/create", json=body, headers=user_headers)
        assert response.status_code == 413
        assert response.json["code"] == "payload_too_large"
        assert count(app) == 0


class TestUpdate:
    def test_owner_updates_any_subset(self, app, client, user_headers):
        (product_id,) = seed(app, {"name": "Lamp", "quantity": 3})
        response = client.put(f"/products/{product_id}/update", json={"quantity": 7}, headers=user_headers)
        assert response.status_code == 200
        assert (response.json["name"], response.json["quantity"]) == ("Lamp", 7)
        assert response.headers["ETag"] == '"2"'
        assert stored(app, product_id).quantity == 7

    def test_the_spa_sends_the_whole_product_back(self, app, client, user_headers):
        (product_id,) = seed(app, {"name": "Lamp"})
        spa_body = {
            "id": 999,
            "user_id": "auth0|bob",
            "name": "Lamp v2",
            "description": "",
            "price": "21.50",
            "quantity": "5",
            "created_at": "2000-01-01T00:00:00Z",
            "colour": "blue",
        }
        response = client.put(f"/products/{product_id}/update", json=spa_body, headers=user_headers)
        assert response.status_code == 200
        product = stored(app, product_id)
        assert (product.id, product.user_id, product.name) == (product_id, "auth0|alice", "Lamp v2")
        assert (product.price, product.quantity, product.description) == (Decimal("21.50"), 5, "")

    def test_description_can_be_cleared(self, app, client, user_headers):
        (product_id,) = seed(app, {"description": "old"})
        response = client.put(f"/products/{product_id}/update", json={"description": None}, headers=user_headers)
        assert response.status_code == 200
        assert stored(app, product_id).description is None

    def test_no_change_keeps_the_version(self, app, client, user_headers):
        (product_id,) = seed(app, {"name": "Lamp"})
        response = client.put(f"/products/{product_id}/update", json={"name": "Lamp"}, headers=user_headers)
        assert response.status_code == 200
        assert response.headers["ETag"] == '"1"'

    def test_admin_may_update_anyones_product(self, app, client, admin_headers):
        (product_id,) = seed(app, {"owner": "auth0|alice"})
        response = client.put(f"/products/{product_id}/update", json={"name": "Fixed"}, headers=admin_headers)
        assert response.status_code == 200
        product = stored(app, product_id)
        assert (product.name, product.user_id) == ("Fixed", "auth0|alice")

    def test_others_are_forbidden(self, app, client, other_headers):
        (product_id,) = seed(app, {"owner": "auth0|alice", "name": "Lamp"})
        response = client.put(f"/products/{product_id}/update", json={"name": "Mine"}, headers=other_headers)
        assert response.status_code == 403
        assert response.json["code"] == "forbidden"
        assert stored(app, product_id).name == "Lamp"

    def test_unknown_product_is_404(self, client, user_headers):
        response = client.put("/products/4242/update", json={"name": "x"}, headers=user_headers)
        assert response.status_code == 404

    def test_invalid_update_changes_nothing(self, app, client, user_headers):
        (product_id,) = seed(app, {"name": "Lamp", "price": Decimal("19.99")})
        response = client.put(f"/products/{product_id}/update", json={"name": "New", "price": -1}, headers=user_headers)
        assert response.status_code == 422
        product = stored(app, product_id)
        assert (product.name, product.price, product.version) == ("Lamp", Decimal("19.99"), 1)

    def test_if_match_with_the_current_etag_succeeds(self, app, client, user_headers):
        (product_id,) = seed(app, {"name": "Lamp"})
        etag = client.get(f"/products/{product_id}").headers["ETag"]
        response = client.put(
            f"/products/{product_id}/update", json={"name": "New"}, headers={**user_headers, "If-Match": etag}
        )
        assert response.status_code == 200
        assert response.headers["ETag"] == '"2"'

    def test_a_stale_etag_is_412_and_nothing_is_overwritten(self, app, client, user_headers):
        (product_id,) = seed(app, {"name": "Lamp"})
        stale = client.get(f"/products/{product_id}").headers["ETag"]
        client.put(f"/products/{product_id}/update", json={"name": "First"}, headers=user_headers)
        response = client.put(
            f"/products/{product_id}/update", json={"name": "Second"}, headers={**user_headers, "If-Match": stale}
        )
        assert response.status_code == 412
        assert response.json["code"] == "precondition_failed"
        assert stored(app, product_id).name == "First"

    @pytest.mark.parametrize("if_match", ['""', 'W/""', "", "lamp", '"9", ""'])
    def test_an_if_match_that_names_no_version_is_412(self, app, client, user_headers, if_match):
        """Found by fuzzing once If-Match was documented: an empty tag was a 500."""
        (product_id,) = seed(app, {"name": "Lamp"})
        for method in (client.put, client.patch, client.delete):
            response = method(
                f"/products/{product_id}", json={"name": "New"}, headers={**user_headers, "If-Match": if_match}
            )
            assert response.status_code == 412, (method, if_match)
        assert (stored(app, product_id).name, stored(app, product_id).version) == ("Lamp", 1)

    def test_if_match_star_matches_any_version(self, app, client, user_headers):
        (product_id,) = seed(app, {"name": "Lamp"})
        response = client.put(
            f"/products/{product_id}/update", json={"name": "New"}, headers={**user_headers, "If-Match": "*"}
        )
        assert response.status_code == 200

    @pytest.mark.parametrize(
        ("if_match", "status", "name"),
        [
            ('"1"', 200, "New"),
            ('"7", "1"', 200, "New"),  # any of the listed versions
            ('W/"1"', 412, "Lamp"),  # If-Match compares strongly: a weak tag never matches
            ('"7"', 412, "Lamp"),
            ('"abc"', 412, "Lamp"),
        ],
    )
    def test_if_match_forms(self, app, client, user_headers, if_match, status, name):
        (product_id,) = seed(app, {"name": "Lamp"})
        response = client.put(
            f"/products/{product_id}/update", json={"name": "New"}, headers={**user_headers, "If-Match": if_match}
        )
        assert response.status_code == status
        assert stored(app, product_id).name == name

    def test_a_no_op_with_a_stale_if_match_is_412(self, app, client, user_headers):
        (product_id,) = seed(app, {"name": "Lamp"})
        response = client.put(
            f"/products/{product_id}/update", json={"name": "Lamp"}, headers={**user_headers, "If-Match": '"7"'}
        )
        assert response.status_code == 412

    def test_a_refused_update_leaves_the_row_and_its_version(self, app, client, other_headers):
        """403 comes from the same UPDATE's conditions: the row is untouched, its version too."""
        (product_id,) = seed(app, {"owner": "auth0|alice", "quantity": 3})
        response = client.put(f"/products/{product_id}/update", json={"quantity": 9}, headers=other_headers)
        assert response.status_code == 403
        assert (stored(app, product_id).quantity, stored(app, product_id).version) == (3, 1)


class TestDelete:
    def test_owner_deletes(self, app, client, user_headers):
        (product_id,) = seed(app, {"owner": "auth0|alice"})
        response = client.delete(f"/products/{product_id}/delete", headers=user_headers)
        assert response.status_code == 200
        assert response.json == {"message": "The product was deleted."}
        assert stored(app, product_id) is None

    def test_admin_deletes_anyones(self, app, client, admin_headers):
        (product_id,) = seed(app, {"owner": "auth0|alice"})
        assert client.delete(f"/products/{product_id}/delete", headers=admin_headers).status_code == 200
        assert stored(app, product_id) is None

    def test_others_are_forbidden(self, app, client, other_headers):
        (product_id,) = seed(app, {"owner": "auth0|alice"})
        response = client.delete(f"/products/{product_id}/delete", headers=other_headers)
        assert response.status_code == 403
        assert stored(app, product_id) is not None

    def test_unknown_product_is_404(self, client, user_headers):
        assert client.delete("/products/4242/delete", headers=user_headers).status_code == 404

    def test_stale_if_match_keeps_the_product(self, app, client, user_headers):
        (product_id,) = seed(app, {"owner": "auth0|alice"})
        response = client.delete(f"/products/{product_id}/delete", headers={**user_headers, "If-Match": '"7"'})
        assert response.status_code == 412
        assert stored(app, product_id) is not None

    def test_anonymous_is_401(self, app, client):
        (product_id,) = seed(app, {"owner": "auth0|alice"})
        response = client.delete(f"/products/{product_id}/delete")
        assert response.status_code == 401
        assert stored(app, product_id) is not None


class TestSearchTimeout:
    """The last guard: a statement that outruns SEARCH_TIMEOUT_MS is stopped, and the request answers 503 JSON."""

    SLOW = {
        # A few hundred million steps: far past any timeout here, and stoppable at any point.
        "sqlite": "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300000000) "
        "SELECT count(*) FROM n",
        "postgresql": "SELECT pg_sleep(5)",
    }

    def test_a_statement_past_the_limit_is_stopped_and_the_session_still_works(self, app):
        from app.errors import ServiceUnavailable
        from app.services.timeouts import statement_timeout

        with app.app_context():
            started = time.perf_counter()
            with pytest.raises(ServiceUnavailable) as refused, statement_timeout(50):
                db.session.execute(text(self.SLOW[db.engine.dialect.name]))
            assert time.perf_counter() - started < 2
            assert refused.value.code == "search_timeout" and refused.value.status == 503
            with statement_timeout(5000):
                assert db.session.execute(text("SELECT 1")).scalar() == 1
            assert db.session.query(Product).count() == 0  # the session is usable afterwards
            if db.engine.dialect.name == "postgresql":  # and the limit did not outlive its block
                assert db.session.execute(text("SHOW statement_timeout")).scalar() == "0"

    def test_a_search_that_times_out_is_503_json(self, make_app, monkeypatch):
        """Made slow on purpose: the timeout is what answers, not the term."""
        from app.services import products as service

        app = make_app(SEARCH_TIMEOUT_MS="50")
        slow = text(
            self.SLOW["postgresql" if app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql") else "sqlite"]
        )
        original = service.search_candidates

        def slow_candidates(**kwargs):
            db.session.execute(slow)
            return original(**kwargs)

        monkeypatch.setattr(service, "search_candidates", slow_candidates)
        response = app.test_client().get("/products?q=lamp")
        assert response.status_code == 503
        assert response.json["code"] == "search_timeout"
        assert response.headers["Retry-After"] == "5"


class TestRestPaths:
    """The conventional REST paths answer like the seed's paths: same rules, same authentication, same limit."""

    def test_post_products_creates(self, app, client, user_headers):
        response = client.post("/products", json=LAMP, headers=user_headers)
        assert response.status_code == 201
        assert response.json["name"] == "Lamp" and response.json["user_id"] == "auth0|alice"
        assert response.headers["Location"] == f"/products/{response.json['id']}"
        assert stored(app, response.json["id"]).price == Decimal("19.99")

    def test_put_and_patch_update_partially(self, app, client, user_headers):
        product_id = client.post("/products", json=LAMP, headers=user_headers).json["id"]
        put = client.put(f"/products/{product_id}", json={"quantity": "7"}, headers=user_headers)
        assert put.status_code == 200 and put.json["quantity"] == 7 and put.json["name"] == "Lamp"
        patch = client.patch(f"/products/{product_id}", json={"price": "5.50"}, headers=user_headers)
        assert patch.status_code == 200 and patch.json["price"] == 5.5 and patch.json["quantity"] == 7
        assert stored(app, product_id).price == Decimal("5.50")

    def test_delete_products_id_deletes(self, app, client, user_headers):
        product_id = client.post("/products", json=LAMP, headers=user_headers).json["id"]
        response = client.delete(f"/products/{product_id}", headers=user_headers)
        assert response.status_code == 200
        assert response.json == {"message": "The product was deleted."}
        assert stored(app, product_id) is None

    @pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
    def test_writes_need_a_token(self, app, client, method):
        (product_id,) = seed(app, {"name": "Kept"})
        path = "/products" if method == "post" else f"/products/{product_id}"
        response = getattr(client, method)(path, json={"name": "x"})
        assert response.status_code == 401
        assert response.json["code"] == "unauthorized"
        assert stored(app, product_id).name == "Kept" and count(app) == 1

    @pytest.mark.parametrize("method", ["put", "patch", "delete"])
    def test_only_the_owner_changes(self, app, client, user_headers, other_headers, method):
        product_id = client.post("/products", json=LAMP, headers=user_headers).json["id"]
        response = getattr(client, method)(f"/products/{product_id}", json={"name": "Mine"}, headers=other_headers)
        assert response.status_code == 403
        assert response.json["code"] == "forbidden"
        assert stored(app, product_id).name == "Lamp"

    def test_an_alias_spends_its_seed_paths_write_budget(self, make_app, user_headers):
        client = make_app(RATELIMIT_WRITES="2 per minute").test_client()
        assert client.post("/products", json=LAMP, headers=user_headers).status_code == 201
        assert client.post("/products/create", json=LAMP, headers=user_headers).status_code == 201
        response = client.post("/products", json=LAMP, headers=user_headers)
        assert response.status_code == 429
        assert response.json["code"] == "rate_limited"
        product_id = client.get("/products").json[0]["id"]
        assert client.put(f"/products/{product_id}/update", json={"name": "A"}, headers=user_headers).status_code == 200
        assert client.patch(f"/products/{product_id}", json={"name": "B"}, headers=user_headers).status_code == 200
        response = client.put(f"/products/{product_id}", json={"name": "Over"}, headers=user_headers)
        assert response.status_code == 429
        assert client.get(f"/products/{product_id}").json["name"] == "B"


@contextmanager
def sql_statements(app):
    """The SQL statements the app runs inside the block."""
    statements = []

    def listen(_conn, _cursor, statement, *_args):
        statements.append(statement)

    prepared = PreparedRead.first

    def first(read, **params):  # the hottest reads skip SQLAlchemy's execution layer, and its events
        statements.append(str(read.statement.compile(dialect=db.engine.dialect)))
        return prepared(read, **params)

    with app.app_context(), patch.object(PreparedRead, "first", first):
        event.listen(db.engine, "before_cursor_execute", listen)
        try:
            yield statements
        finally:
            event.remove(db.engine, "before_cursor_execute", listen)


class TestListCache:
    """Each process keeps recent list answers by ETag (LIST_CACHE_SIZE): a repeat reads only the
    change counter, and any committed change of products, by any process, is seen at once."""

    def answer(self, response):
        headers = {name: response.headers.get(name) for name in ("ETag", "Link", "X-Total-Count", "X-Next-Cursor")}
        return response.status_code, response.json, headers

    def test_a_repeat_reads_only_the_counter_and_answers_the_same(self, app, client):
        seed(app, {"name": "Lamp"}, {"name": "Chair"})
        first = client.get("/products?per_page=1")
        with sql_statements(app) as statements:
            again = client.get("/products?per_page=1")
        assert self.answer(again) == self.answer(first)
        assert len(statements) == 1 and "FROM product_stats" in statements[0] and "products." not in statements[0]

    def test_a_change_by_another_process_is_seen_by_the_next_read(self, app, client, user_headers):
        (product_id,) = seed(app, {"name": "Lamp", "quantity": 3})
        before = client.get("/products")
        with app.app_context(), db.engine.connect() as other:  # as another worker or host would
            other.execute(update(Product).values(quantity=4))
            other.commit()
        after = client.get("/products")
        assert after.json[0]["quantity"] == 4 and after.headers["ETag"] != before.headers["ETag"]
        client.post("/products/create", json={"name": "Chair", "price": "5", "quantity": 1}, headers=user_headers)
        assert [p["name"] for p in client.get("/products").json] == ["Chair", "Lamp"]
        assert client.get("/products").headers["X-Total-Count"] == "2"

    def test_queries_do_not_share_answers(self, app, client):
        seed(app, {"name": "Lamp"}, {"name": "Chair"})
        assert len(client.get("/products?per_page=1").json) == 1
        assert len(client.get("/products?per_page=2").json) == 2
        assert [p["name"] for p in client.get("/products?sort=name").json] == ["Chair", "Lamp"]

    def test_size_0_turns_it_off(self, make_app):
        app = make_app(LIST_CACHE_SIZE="0")
        seed(app, {"name": "Lamp"})
        client = app.test_client()
        client.get("/products")
        with sql_statements(app) as statements:
            assert client.get("/products").status_code == 200
        assert len(statements) == 1 and "FROM products" in statements[0]  # the page itself, every time

    def test_long_answers_are_bounded_in_bytes(self, make_app):
        app = make_app(LIST_CACHE_SIZE="256", LIST_CACHE_MB="1")
        seed(app, *({"name": f"Lamp {i}", "description": "x" * 2000} for i in range(10)))
        client = app.test_client()
        pages = app.extensions["dmarket.list_pages"]
        for per_page in range(10, 100):  # 90 distinct queries of ~20 KB answers: ~1.8 MB together
            assert len(client.get(f"/products?q=lamp&per_page={per_page}").json) == 10
        assert 1 << 19 < pages.bytes <= 1 << 20 and len(pages._entries) < 90
        assert pages.bytes == sum(cost for _, cost in pages._entries.values())


class TestConditionalGet:
    """If-None-Match on reads: 304 while the answer is the same, the full answer once anything changed."""

    @pytest.fixture
    def lamp(self, app):
        (product_id,) = seed(app, {"name": "Lamp"})
        return f"/products/{product_id}"

    @pytest.mark.parametrize(
        "path",
        ["/products/{id}", "/products", "/products?per_page=1&sort=-name", "/products?q=lamp", "/products?page=3"],
    )
    def test_a_matching_tag_gets_304_without_a_body(self, app, client, lamp, path):
        url = path.format(id=lamp.rsplit("/", 1)[1])
        first = client.get(url)
        assert first.status_code == 200
        assert first.headers["Cache-Control"] == "no-cache"
        etag = first.headers["ETag"]
        assert etag.startswith('"') and etag.endswith('"')  # strong
        again = client.get(url, headers={"If-None-Match": etag})
        assert again.status_code == 304
        assert again.get_data() == b""
        assert again.headers["ETag"] == etag
        assert again.headers["Cache-Control"] == "no-cache"
        assert stored(app, int(lamp.rsplit("/", 1)[1])).version == 1

    @pytest.mark.parametrize("path", ["/products/{id}", "/products"])
    def test_a_304_carries_the_json_answers_policy_headers(self, client, lamp, path):
        """A browser's cache takes a 304's headers into the answer it stored: they must be the JSON
        answer's own (its strict CSP, no referrer), not a page's."""
        url = path.format(id=lamp.rsplit("/", 1)[1])
        first = client.get(url)
        again = client.get(url, headers={"If-None-Match": first.headers["ETag"]})
        assert again.status_code == 304
        policy = ("Content-Security-Policy", "Referrer-Policy", "X-Content-Type-Options", "X-Frame-Options")
        assert {name: again.headers.get(name) for name in policy} == {name: first.headers[name] for name in policy}
        assert "Content-Type" not in again.headers  # a 304 has no body to describe

    @pytest.mark.parametrize("path", ["/products/{id}", "/products", "/products?q=lamp"])
    def test_weak_star_and_lists_of_tags_match_too(self, client, lamp, path):
        url = path.format(id=lamp.rsplit("/", 1)[1])
        etag = client.get(url).headers["ETag"]
        for header in (f"W/{etag}", "*", f'"stale", {etag}'):
            assert client.get(url, headers={"If-None-Match": header}).status_code == 304, header

    @pytest.mark.parametrize("path", ["/products/{id}", "/products"])
    def test_a_stale_tag_gets_the_full_answer(self, client, lamp, path):
        url = path.format(id=lamp.rsplit("/", 1)[1])
        response = client.get(url, headers={"If-None-Match": '"stale"'})
        assert response.status_code == 200
        assert response.json == client.get(url).json
        assert response.headers["ETag"] != '"stale"'

    def test_star_on_a_missing_product_is_still_404(self, client):
        response = client.get("/products/999", headers={"If-None-Match": "*"})
        assert response.status_code == 404
        assert response.json["code"] == "not_found"

    @pytest.mark.parametrize("path", ["/products/{id}", "/products"])
    def test_after_an_update_the_old_tag_no_longer_matches(self, app, client, lamp, user_headers, path):
        url = path.format(id=lamp.rsplit("/", 1)[1])
        old = client.get(url).headers["ETag"]
        assert client.put(f"{lamp}/update", json={"quantity": 9}, headers=user_headers).status_code == 200
        response = client.get(url, headers={"If-None-Match": old})
        assert response.status_code == 200
        assert response.headers["ETag"] != old
        body = response.json if isinstance(response.json, dict) else response.json[0]
        assert body["quantity"] == 9
        assert stored(app, body["id"]).quantity == 9

    def test_every_change_by_the_api_gives_the_list_a_new_tag(self, app, client, lamp, user_headers):
        """Create, update, delete: each old tag gets the full answer. The counter only grows, so even
        a list back to its earlier rows gets a tag it never had (a strong tag may change needlessly,
        never stay when the answer changed)."""

        def tag_after(write, old: str) -> str:
            assert write.status_code in (200, 201)
            response = client.get("/products", headers={"If-None-Match": old})
            assert response.status_code == 200
            assert response.headers["X-Total-Count"] == str(count(app))
            return response.headers["ETag"]

        tags = [client.get("/products").headers["ETag"]]
        created = client.post("/products/create", json=LAMP, headers=user_headers)
        tags.append(tag_after(created, tags[-1]))
        tags.append(tag_after(client.put(f"{lamp}/update", json={"quantity": 9}, headers=user_headers), tags[-1]))
        tags.append(tag_after(client.delete(created.headers["Location"] + "/delete", headers=user_headers), tags[-1]))
        assert len(set(tags)) == 4
        assert [row["id"] for row in client.get("/products").json] == [int(lamp.rsplit("/", 1)[1])]

    def test_a_search_and_a_cursor_page_answer_304_too(self, app, client, lamp):
        seed(app, {"name": "Lamp shade"})
        cursor = client.get("/products?per_page=1").headers["X-Next-Cursor"]
        for query in ({"q": "lamp", "per_page": 1}, {"per_page": 1, "cursor": cursor}, {"q": "lamp", "cursor": cursor}):
            first = client.get("/products", query_string=query)
            assert first.status_code == 200 and len(first.json) == 1, query
            again = client.get("/products", query_string=query, headers={"If-None-Match": first.headers["ETag"]})
            assert again.status_code == 304, query
            assert again.get_data() == b""
            assert again.headers["ETag"] == first.headers["ETag"]
            assert again.headers["Cache-Control"] == "no-cache"

    def test_each_query_has_a_tag_of_its_own(self, app, client):
        seed(app, {"name": "Lamp"}, {"name": "Chair"})
        cursor = client.get("/products?per_page=1").headers["X-Next-Cursor"]
        queries = [
            "page=1&per_page=1", "page=2&per_page=1", "per_page=2", "sort=name", "q=lamp", "q=chair",
            "user_id=auth0|alice", "user_id=auth0|bob", f"per_page=1&cursor={cursor}",
        ]  # fmt: skip
        tags = [client.get(f"/products?{query}").headers["ETag"] for query in queries]
        assert len(set(tags)) == len(queries)
        assert client.get("/products?per_page=1&page=2", headers={"If-None-Match": tags[0]}).status_code == 200

    @pytest.mark.parametrize(
        "query", ["", "page=2&per_page=1", "sort=-price&user_id=auth0|alice", "q=lamp", "q=lamp&user_id=auth0|alice"]
    )
    def test_a_conditional_list_reads_the_counter_and_nothing_else(self, app, client, lamp, query):
        """As cheap as a product's 304: one statement on the stats slots, whatever the query would read."""
        etag = client.get(f"/products?{query}").headers["ETag"]
        with sql_statements(app) as statements:
            assert client.get(f"/products?{query}", headers={"If-None-Match": etag}).status_code == 304
        assert len(statements) == 1, statements
        assert "FROM product_stats" in statements[0] and "products." not in statements[0]

    def test_an_edited_cursor_is_422_even_with_a_tag(self, app, client, lamp):
        seed(app, {"name": "Chair"})
        cursor = client.get("/products?per_page=1").headers["X-Next-Cursor"]
        edited = cursor[:-2] + ("BB" if cursor.endswith("AA") else "AA")
        response = client.get("/products", query_string={"cursor": edited}, headers={"If-None-Match": "*"})
        assert response.status_code == 422

    def test_a_search_that_straddles_a_commit_gets_no_tag(self, app, client, lamp, monkeypatch):
        """Its two statements saw two states of the table: no tag (a later request could match it
        while the rows are not one state's), still no-cache. The next search has one again."""
        original = products_service.search_candidates

        def commit_between(**kwargs):
            with db.engine.connect() as other:
                other.execute(update(Product).values(quantity=Product.quantity + 1))
                other.commit()
            return original(**kwargs)

        monkeypatch.setattr(products_service, "search_candidates", commit_between)
        response = client.get("/products?q=lamp")
        assert response.status_code == 200
        assert response.json[0]["quantity"] == 4
        assert "ETag" not in response.headers
        assert response.headers["Cache-Control"] == "no-cache"
        monkeypatch.setattr(products_service, "search_candidates", original)
        assert "ETag" in client.get("/products?q=lamp").headers

    def test_an_empty_page_that_rows_reached_since_gets_no_tag(self, app, client, lamp, monkeypatch):
        """Page 2 read empty, then a create moved the lamp onto it: the empty answer is no state the
        counter read next describes, so it goes without a tag."""
        original, created = products_service.read_connection, []

        @contextmanager
        def create_after_the_first_read():
            with original() as connection:
                execute = connection.execute

                def then_create(statement):
                    result = execute(statement).freeze()  # read in full before the write
                    if not created and statement is not products_service.CHANGES:  # the page itself, not its tag
                        created.extend(seed(app, {"name": "Newer"}))
                    return result()

                connection.execute = then_create
                yield connection

        monkeypatch.setattr(products_service, "read_connection", create_after_the_first_read)
        response = client.get("/products?page=2&per_page=1")
        assert response.status_code == 200
        assert response.json == []
        assert "ETag" not in response.headers
        assert response.headers["Cache-Control"] == "no-cache"
        monkeypatch.undo()
        assert [row["name"] for row in client.get("/products?page=2&per_page=1").json] == ["Lamp"]

    def test_the_answer_does_not_depend_on_credentials(self, client, lamp, user_headers):
        """Reads are public: the same body and tag signed in or not, so no Vary on Authorization is needed."""
        for url in (lamp, "/products"):
            anonymous, signed_in = client.get(url), client.get(url, headers=user_headers)
            assert anonymous.json == signed_in.json
            assert anonymous.headers["ETag"] == signed_in.headers["ETag"]
            assert "Authorization" not in anonymous.headers.get("Vary", "")
