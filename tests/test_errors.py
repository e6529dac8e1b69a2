"""Error messages never repeat what the client sent (issue 11, INFO): no reflected markup, no log-forging echo."""

from urllib.parse import quote

import pytest

from tests.factories import bearer, make_user
from tests.issuer import ADMIN_CLAIM

MARKER = "<img src=x onerror=alert(1)>"
EMAIL_MARKER = "<img>"
PATH_MARKER = quote(f"auth0|{MARKER}", safe="")


@pytest.fixture
def admin(app, issuer):
    with app.app_context():
        make_user("auth0|root", email="root@example.com", is_admin=True)
    return bearer(issuer.token("auth0|root", **{ADMIN_CLAIM: {"is_admin": True}}))


@pytest.mark.parametrize(
    "method, path, body, status",
    [
        ("delete", f"/users/{PATH_MARKER}", None, 404),
        ("post", f"/users/{PATH_MARKER}/restore", None, 404),
        ("post", "/admin/set", {"email": f"{EMAIL_MARKER}@x.example"}, 404),
        ("post", "/admin/unset", {"user_id": f"auth0|{MARKER}"}, 404),
        ("get", "/products/987654", None, 404),
        ("put", "/products/987654/update", {"name": "Lamp"}, 404),
        ("delete", "/products/987654/delete", None, 404),
        ("get", f"/products?{quote(MARKER)}=1", None, 422),
        ("get", f"/admin/users?{quote(MARKER)}=1", None, 422),
    ],
)
def test_messages_do_not_repeat_the_input(client, admin, method, path, body, status):
    response = getattr(client, method)(path, json=body, headers=admin)
    assert response.status_code == status
    text = response.get_data(as_text=True)
    assert MARKER not in text and "img" not in text and "987654" not in text
    assert set(response.json) <= {"code", "message", "details"}


def test_an_unknown_parameter_is_named_only_when_it_is_plainly_a_name(client):
    response = client.get(f"/products?{quote(MARKER)}=1&colour=red")
    assert response.status_code == 422
    assert {d["field"] for d in response.json["details"]} == {"(unnamed)", "colour"}


def test_the_not_found_messages(client, admin):
    assert client.get("/products/987654").json == {"code": "not_found", "message": "The product was not found."}
    response = client.delete(f"/users/{PATH_MARKER}", headers=admin)
    assert response.json == {"code": "not_found", "message": "The user was not found."}
