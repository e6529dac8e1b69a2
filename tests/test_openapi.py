"""The OpenAPI document as a contract: valid, read alike by every tool, and true to what the API reads and sends.

The generated clients themselves (Python and TypeScript, compiled strictly, against a live
server) are in tests/test_clients.py; contract fuzzing in tests/test_contract.py.
"""

import json
import re
import shutil
import subprocess
from decimal import Decimal

import jsonschema
import pytest
import yaml
from openapi_spec_validator import validate

from app.extensions import db
from app.models import User
from tests.documents import DOCUMENTS, LOCAL
from tests.test_app import TRANSPORT_AND_BROWSER_POLICY

SPEC = DOCUMENTS["auth0"]
BOTH = pytest.mark.parametrize("spec", DOCUMENTS.values(), ids=DOCUMENTS.keys())
SCHEMAS = SPEC["components"]["schemas"]
# The five writes that honour If-Match: the SPA's paths and the REST aliases, told apart.
CONDITIONAL_WRITES = {
    ("put", "/products/{product_id}/update"): "updateProduct",
    ("put", "/products/{product_id}"): "updateProductRest",
    ("patch", "/products/{product_id}"): "patchProductRest",
    ("delete", "/products/{product_id}/delete"): "deleteProduct",
    ("delete", "/products/{product_id}"): "deleteProductRest",
}


def validator(schema: dict, spec: dict = SPEC) -> jsonschema.Draft202012Validator:
    """A JSON Schema 2020-12 validator that resolves the document's `#/components/schemas/...` references."""
    return jsonschema.Draft202012Validator({**schema, "components": spec["components"]})


def operations(spec: dict) -> dict:
    return {(method, path): op for path, item in spec["paths"].items() for method, op in item.items()}


OPERATIONS = operations(SPEC)


def walk(node, path=()):
    """Every dict in the document with where it is."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from walk(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, (*path, index))


class TestTheDocument:
    @BOTH
    def test_is_valid_openapi_3_1(self, spec):
        validate(spec)  # openapi-spec-validator: raises on the first problem
        assert spec["openapi"].startswith("3.1")

    def test_is_plain_utf8_json_that_yaml_tools_load(self, client):
        response = client.get("/openapi/openapi.json")
        text = response.get_data().decode("utf-8")
        assert response.mimetype == "application/json"
        assert not re.search(r"\\u[dD][89a-fA-F]", text), "a surrogate escape: YAML loaders refuse it"
        assert yaml.safe_load(text) == json.loads(text) == SPEC

    @BOTH
    def test_has_servers_a_license_and_security_on_every_operation(self, spec):
        assert spec["servers"] == [{"url": "/", "description": "The server that serves this document"}]
        assert spec["info"]["license"]["identifier"] == "MIT"
        for (method, path), operation in operations(spec).items():
            assert "security" in operation, (method, path)
        assert operations(spec)["get", "/products"]["security"] == []
        assert operations(spec)["post", "/products/create"]["security"] == [{"bearerAuth": []}]

    @BOTH
    def test_every_example_validates_against_its_own_schema(self, spec):
        checked = 0
        for path, node in walk(spec):
            schema = node.get("schema", {}) if node.get("in") else node  # a parameter's examples, or a schema's
            examples = [node["example"]] if "example" in node else []
            if isinstance(node.get("examples"), list):
                examples += node["examples"]
            for example in examples:
                assert validator(schema, spec).is_valid(example), (path, example)
                checked += 1
        assert checked >= 1  # Swagger UI's "Try it out" body for a create, at least


class TestOperationIds:
    @BOTH
    def test_are_readable_and_unique(self, spec):
        ids = [operation["operationId"] for operation in operations(spec).values()]
        assert len(ids) == len(set(ids))
        for operation_id in ids:
            assert re.fullmatch(r"[a-z][A-Za-z]*", operation_id), operation_id

    def test_name_the_spas_paths_and_the_rest_aliases_apart(self):
        expected = {
            ("get", "/products"): "listProducts",
            ("get", "/products/{product_id}"): "getProduct",
            ("post", "/products/create"): "createProduct",
            ("post", "/products"): "createProductRest",
            **CONDITIONAL_WRITES,
            ("get", "/me"): "getMe",
            ("get", "/admin/users"): "listUsers",
            ("post", "/admin/set"): "grantAdmin",
            ("post", "/admin/unset"): "revokeAdmin",
            ("delete", "/users/{user_id}"): "deleteUser",
        }
        assert {key: OPERATIONS[key]["operationId"] for key in expected} == expected

    def test_descending_sort_keys_have_enum_names(self):
        (sort,) = [p["schema"] for p in OPERATIONS["get", "/products"]["parameters"] if p["name"] == "sort"]
        names = dict(zip(sort["enum"], sort["x-enum-varnames"], strict=True))
        assert names["-name"] == "NAME_DESC" and names["created_at"] == "CREATED_AT"


class TestHeaders:
    def test_if_match_on_every_conditional_write(self):
        for key in CONDITIONAL_WRITES:
            names = [p["name"] for p in OPERATIONS[key]["parameters"] if p["in"] == "header"]
            assert "If-Match" in names, key
            assert "412" in OPERATIONS[key]["responses"], key
        assert "If-Match" not in [p["name"] for p in OPERATIONS["post", "/products/create"]["parameters"]]

    @BOTH
    def test_x_request_id_is_a_parameter_of_every_operation_and_in_every_answer(self, spec):
        for key, operation in operations(spec).items():
            (parameter,) = [p for p in operation["parameters"] if p["name"] == "X-Request-ID"]
            assert parameter["in"] == "header" and not parameter["required"], key
            for status, response in operation["responses"].items():
                assert "X-Request-ID" in response["headers"], (key, status)

    def test_the_sign_in_pages_send_only_documented_headers(self, make_app, client):
        """Set-Cookie on the sign-in pages, Location on every redirect (the API's own answers: test_app.py)."""
        local = make_app(**LOCAL).test_client()
        form = {"code": local.application.config["LOCAL_SIGNIN_CODE"], "email": "dev@example.com"}
        answers = {
            ("local", "/login", "post"): local.post("/login", data=form, headers={"Origin": "http://localhost"}),
            ("local", "/logout", "get"): local.get("/logout"),
            ("auth0", "/login", "get"): client.get("/login"),
        }
        for (mode, path, method), response in answers.items():
            documented = DOCUMENTS[mode]["paths"][path][method]["responses"][str(response.status_code)]["headers"]
            sent = set(response.headers.keys()) - TRANSPORT_AND_BROWSER_POLICY
            assert "Set-Cookie" in sent and sent <= set(documented), (path, sent - set(documented))
            assert not documented["Set-Cookie"]["required"]

    def test_the_server_honours_the_documented_if_match(self, client, user_headers):
        created = client.post("/products", json={"name": "Lamp", "price": 2, "quantity": 1}, headers=user_headers)
        url, etag = created.headers["Location"], created.headers["ETag"]
        stale = client.put(url, json={"name": "New"}, headers={**user_headers, "If-Match": '"other"'})
        assert stale.status_code == 412 and stale.json["code"] == "precondition_failed"
        updated = client.patch(url, json={"name": "New"}, headers={**user_headers, "If-Match": etag})
        assert updated.status_code == 200 and updated.json["name"] == "New"
        assert client.delete(url, headers={**user_headers, "If-Match": etag}).status_code == 412
        assert client.delete(url, headers={**user_headers, "If-Match": updated.headers["ETag"]}).status_code == 200


class TestSchemas:
    @BOTH
    def test_request_bodies_are_named_schemas(self, spec):
        for (method, path), operation in operations(spec).items():
            content = operation.get("requestBody", {}).get("content", {})
            for media_type in content.values():
                assert set(media_type["schema"]) == {"$ref"}, (method, path)

    @pytest.mark.parametrize(
        "body, valid",
        [
            ({"email": "a@example.com"}, True),
            ({"user_id": "auth0|a"}, True),
            ({}, False),
            ({"email": "a@example.com", "user_id": "auth0|a"}, False),
        ],
    )
    def test_the_admin_target_is_exactly_one_of_two_named_variants(self, body, valid):
        target = SCHEMAS["AdminTarget"]
        assert target["oneOf"] == [
            {"$ref": "#/components/schemas/AdminTargetByEmail"},
            {"$ref": "#/components/schemas/AdminTargetByUserId"},
        ]
        assert validator(target).is_valid(body) is valid

    @BOTH
    def test_optional_fields_have_no_null_default(self, spec):
        """Generators' default modes read a default as "always present": optional fields carry none."""
        for path, node in walk(spec):  # schemas and query parameters alike
            assert node.get("default", "absent") is not None, path
        assert SCHEMAS["ProductIn"]["required"] == ["name", "price", "quantity"]
        assert "details" not in SCHEMAS["ErrorOut"]["required"]

    def test_error_details_are_typed(self):
        details = SCHEMAS["ErrorOut"]["properties"]["details"]["anyOf"]
        assert details[0] == {"type": "array", "items": {"$ref": "#/components/schemas/FieldError"}}
        assert SCHEMAS["FieldError"]["required"] == ["field", "reason"]

    def test_every_cent_price_validates_as_the_server_accepts_it(self, client, user_headers):
        """No float `multipleOf`: 0.07, 1.15 and 19.99 were refused by validators (11,426 of 100,000)."""
        price = validator(SCHEMAS["ProductIn"]["properties"]["price"])
        cents = [float(Decimal(n) / 100) for n in range(1, 100_001)]
        assert [p for p in cents if not price.is_valid(p)] == []
        for sample in (0.07, 1.15, 19.99):
            body = {"name": "Lamp", "price": sample, "quantity": 1}
            assert client.post("/products", json=body, headers=user_headers).status_code == 201
        assert client.post("/products", json={**body, "price": 0.001}, headers=user_headers).status_code == 422

    @BOTH
    def test_no_pattern_holds_a_character_beyond_u_ffff(self, spec):
        for path, node in walk(spec):
            if isinstance(node.get("pattern"), str):
                assert all(ord(char) <= 0xFFFF for char in node["pattern"]), path

    def test_the_refused_blank_characters_beyond_the_pattern_are_named_in_words(self, client, user_headers):
        name = SCHEMAS["ProductIn"]["properties"]["name"]
        assert "U+E0020-U+E007F" in name["description"]
        response = client.post(
            "/products", json={"name": "\U000e0020\U000e0021", "price": 1, "quantity": 1}, headers=user_headers
        )
        assert response.status_code == 422

    @BOTH
    def test_every_pattern_compiles_in_ecma_262_with_and_without_u(self, spec):
        node = shutil.which("node")
        if node is None:
            pytest.skip("node is not installed: the ECMA-262 check needs it")
        patterns = sorted({n["pattern"] for _, n in walk(spec) if isinstance(n.get("pattern"), str)})
        script = (
            "const failed = [];"
            "for (const p of JSON.parse(require('fs').readFileSync(0, 'utf8'))) for (const flags of ['', 'u'])"
            " { try { new RegExp(p, flags); } catch (e) { failed.push([flags, p, String(e)]); } }"
            "console.log(JSON.stringify(failed));"
        )
        result = subprocess.run([node, "-e", script], input=json.dumps(patterns), capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == []
        assert len(patterns) >= 5


class TestFormFields:
    """The development sign-in form: its fields are strings, as forms send them (not parsed as JSON)."""

    @pytest.mark.parametrize("name", ["0", "1.10", "true", "null", "[1]", '"quoted"'])
    def test_a_name_that_reads_as_json_is_kept_as_sent(self, make_app, name):
        app = make_app(**LOCAL)
        form = {"code": app.config["LOCAL_SIGNIN_CODE"], "email": "dev@example.com", "name": name}
        response = app.test_client().post("/login", data=form, headers={"Origin": "http://localhost"})
        assert response.status_code == 303, response.get_data(as_text=True)[:300]
        with app.app_context():
            assert db.session.get(User, "local|dev@example.com").name == name

    def test_the_admin_box_still_reads_as_a_bool(self, make_app):
        app = make_app(**LOCAL)
        client = app.test_client()
        form = {"code": app.config["LOCAL_SIGNIN_CODE"], "email": "boss@example.com", "admin": "on"}
        assert client.post("/login", data=form, headers={"Origin": "http://localhost"}).status_code == 303
        assert client.get("/admin/check").json == {"is_admin": True}
