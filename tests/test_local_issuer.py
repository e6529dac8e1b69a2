"""AUTH_MODE=local: the API runs with no account anywhere, and its tokens are verified like Auth0's."""

import base64
import json

import pytest

from app.extensions import db
from app.models import Product, User
from tests.factories import bearer, make_product, make_user

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


class TestLocalSignIn:
    def test_login_shows_a_development_sign_in_form(self, local_app):
        page = local_app.test_client().get("/login?next=/products")
        assert page.status_code == 200 and page.mimetype == "text/html"
        html = page.get_data(as_text=True)
        assert "Development sign-in" in html and 'name="email"' in html and 'name="admin"' in html
        assert 'value="/products"' in html

    def test_signing_in_sets_the_session_and_shows_a_token(self, local_app):
        client = local_app.test_client()
        page = client.post(
            "/login", data={"email": "dev@example.com", "name": "Dev"}, headers={"Origin": "http://localhost"}
        )
        assert page.status_code == 200
        token = page.get_data(as_text=True).split("<textarea readonly>")[1].split("</textarea>")[0]
        assert payload(token)["sub"] == "local|dev@example.com"
        assert client.get("/me").json["email"] == "dev@example.com"
        created = client.post(
            "/products/create",
            json={"name": "Lamp", "price": "1.00", "quantity": 1},
            headers={"Origin": "http://localhost"},
        )
        assert created.status_code == 201
        other = local_app.test_client()
        assert other.get("/me", headers=bearer(token)).json["user_id"] == "local|dev@example.com"

    def test_admin_box(self, local_app):
        client = local_app.test_client()
        client.post(
            "/login", data={"email": "boss@example.com", "admin": "true"}, headers={"Origin": "http://localhost"}
        )
        assert client.get("/admin/check").json == {"is_admin": True}

    def test_a_cross_site_form_cannot_sign_a_browser_in(self, local_app):
        response = local_app.test_client().post(
            "/login", data={"email": "dev@example.com"}, headers={"Origin": "https://evil.example"}
        )
        assert response.status_code == 403
        with local_app.app_context():
            assert db.session.query(User).count() == 0

    def test_bad_email(self, local_app):
        response = local_app.test_client().post(
            "/login", data={"email": "nope"}, headers={"Origin": "http://localhost"}
        )
        assert response.status_code == 422

    def test_logout_lands_on_a_page_that_says_so(self, local_app):
        client = local_app.test_client()
        client.post("/login", data={"email": "dev@example.com"}, headers={"Origin": "http://localhost"})
        response = client.get("/logout")
        assert response.status_code == 302 and response.headers["Location"] == "/signed-out"
        assert client.get("/me").status_code == 401
        page = client.get("/signed-out")
        assert page.status_code == 200 and page.mimetype == "text/html"
        assert "<h1>Signed out</h1>" in page.get_data(as_text=True)

    def test_the_signed_in_page_passes_its_content_security_policy(self, local_app):
        client = local_app.test_client()
        page = client.post("/login", data={"email": "dev@example.com"}, headers={"Origin": "http://localhost"})
        assert "<script" not in page.get_data(as_text=True)
        assert "form-action 'self'" in page.headers["Content-Security-Policy"]


class TestAdminCommands:
    def run(self, app, *args):
        return app.test_cli_runner().invoke(args=["admin", *args])

    def test_grant_list_revoke(self, local_app):
        with local_app.app_context():
            make_user("local|first@example.com", email="first@example.com")
            make_user("local|second@example.com", email="second@example.com")
        assert "No admins yet" in self.run(local_app, "list").output
        granted = self.run(local_app, "grant", "first@example.com")
        assert granted.exit_code == 0 and "local|first@example.com <first@example.com>: admin=yes" in granted.output
        self.run(local_app, "grant", "second@example.com")
        listed = self.run(local_app, "list").output.splitlines()
        assert [line.split("\t")[0] for line in listed] == ["local|first@example.com", "local|second@example.com"]
        assert self.run(local_app, "revoke", "second@example.com").exit_code == 0
        with local_app.app_context():
            assert db.session.get(User, "local|second@example.com").is_admin is False

    def test_unknown_email_and_last_admin_fail_with_a_message(self, local_app):
        with local_app.app_context():
            make_user("local|first@example.com", email="first@example.com")
        unknown = self.run(local_app, "grant", "ghost@example.com")
        assert unknown.exit_code == 1 and "No user with email ghost@example.com" in unknown.output
        self.run(local_app, "grant", "first@example.com")
        last = self.run(local_app, "revoke", "first@example.com")
        assert last.exit_code == 1 and "last admin" in last.output
