"""AUTH_MODE=local: the API runs with no account anywhere, and its tokens are verified like Auth0's."""

import base64
import json

import pytest

from app.extensions import db
from app.models import Product, User
from tests.factories import bearer, make_product

LOCAL = {"AUTH_MODE": "local", "AUTH0_ISSUER": "", "API_AUDIENCE": ""}


@pytest.fixture
def local_app(make_app):
    return make_app(**LOCAL)


def mint(app, *args) -> str:
    result = app.test_cli_runner().invoke(args=["auth", "token", *args])
    assert result.exit_code == 0, result.output
    return result.output.strip()


def payload(token: str) -> dict:
    body = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def test_publishes_discovery_and_public_keys(local_app):
    client = local_app.test_client()
    discovery = client.get("/.well-known/openid-configuration").json
    assert discovery["issuer"] == "http://localhost:5000/"
    assert discovery["jwks_uri"] == "http://localhost:5000/.well-known/jwks.json"
    (key,) = client.get("/.well-known/jwks.json").json["keys"]
    assert key["kty"] == "RSA" and key["alg"] == "RS256" and key["kid"]
    assert "d" not in key and "p" not in key  # never the private part


def test_cli_token_creates_a_product(local_app):
    token = mint(local_app, "you@example.com", "--name", "You")
    response = local_app.test_client().post(
        "/products/create", json={"name": "Lamp", "price": 5, "quantity": 1}, headers=bearer(token)
    )
    assert response.status_code == 201
    assert response.json["user_id"] == "local|you@example.com"
    with local_app.app_context():
        user = db.session.get(User, "local|you@example.com")
        assert (user.email, user.name) == ("you@example.com", "You")


def test_admin_tokens_and_ttl(local_app):
    token = mint(local_app, "boss@example.com", "--admin", "--ttl", "600")
    claims = payload(token)
    assert claims["exp"] - claims["iat"] == 600
    assert claims["aud"] == "http://localhost:5000/api"
    with local_app.app_context():
        product_id = make_product(owner="auth0|someone").id
    response = local_app.test_client().delete(f"/products/{product_id}/delete", headers=bearer(token))
    assert response.status_code == 200
    with local_app.app_context():
        assert db.session.get(Product, product_id) is None


def test_cli_rejects_bad_input(local_app):
    runner = local_app.test_cli_runner()
    assert runner.invoke(args=["auth", "token", "not-an-email"]).exit_code != 0
    assert runner.invoke(args=["auth", "token", "a@b.c", "--ttl", "5"]).exit_code != 0


def test_the_key_is_made_once_and_kept(make_app):
    first = make_app(**LOCAL)
    token = mint(first, "you@example.com")
    second = make_app(**LOCAL)  # same instance/ folder: a restart
    response = second.test_client().post(
        "/products/create", json={"name": "Lamp", "price": 5, "quantity": 1}, headers=bearer(token)
    )
    assert response.status_code == 201


def test_tokens_go_through_full_verification(local_app):
    token = mint(local_app, "you@example.com")
    header, body, signature = token.split(".")
    tampered = json.dumps({**payload(token), "sub": "local|admin@example.com"}).encode()
    forged = f"{header}.{base64.urlsafe_b64encode(tampered).rstrip(b'=').decode()}.{signature}"
    response = local_app.test_client().post(
        "/products/create", json={"name": "Lamp", "price": 5, "quantity": 1}, headers=bearer(forged)
    )
    assert response.status_code == 401


def test_start_up_warns_in_local_mode(make_app, capsys):
    make_app(**LOCAL)
    assert "AUTH_MODE=local: development sign-in" in capsys.readouterr().err


def test_auth0_mode_has_no_local_issuer(app):
    result = app.test_cli_runner().invoke(args=["auth", "token", "you@example.com"])
    assert result.exit_code != 0
    assert "AUTH_MODE=local" in result.output
    assert app.test_client().get("/.well-known/jwks.json").status_code == 404
