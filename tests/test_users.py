"""Users: /me for the signed-in caller, and removing a user with everything they own."""

import pytest

from app.extensions import db
from app.models import Product, User
from tests.factories import bearer, make_product, make_user
from tests.issuer import ADMIN_CLAIM


class TestMe:
    def test_the_signed_in_user(self, client, user_headers):
        response = client.get("/me", headers=user_headers)
        assert response.status_code == 200
        body = response.json
        assert (body["user_id"], body["email"], body["name"], body["is_admin"]) == (
            "auth0|alice",
            "alice@example.com",
            "Alice",
            False,
        )
        assert body["created_at"].endswith("Z") or body["created_at"].endswith("+00:00")

    def test_admin_rights_from_the_token_show(self, client, admin_headers):
        assert client.get("/me", headers=admin_headers).json["is_admin"] is True

    def test_needs_a_sign_in(self, client):
        response = client.get("/me")
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"


class TestFirstAdmin:
    def test_admin_emails_grant_admin_on_first_sign_in_of_a_verified_email(self, make_app, issuer):
        app = make_app(ADMIN_EMAILS="owner@example.com, other@example.com")
        client = app.test_client()
        verified = bearer(issuer.token("auth0|owner", email="Owner@example.com", email_verified=True))
        assert client.get("/me", headers=verified).json["is_admin"] is True
        with app.app_context():
            assert db.session.get(User, "auth0|owner").is_admin is True

    def test_an_unverified_email_is_not_enough(self, make_app, issuer):
        client = make_app(ADMIN_EMAILS="owner@example.com").test_client()
        squatter = bearer(issuer.token("auth0|squatter", email="owner@example.com", email_verified=False))
        assert client.get("/me", headers=squatter).json["is_admin"] is False

    def test_only_on_first_sight(self, make_app, issuer):
        app = make_app(ADMIN_EMAILS="owner@example.com")
        with app.app_context():
            make_user("auth0|owner", email="before@example.com")
        token = bearer(issuer.token("auth0|owner", email="owner@example.com", email_verified=True))
        assert app.test_client().get("/me", headers=token).json["is_admin"] is False


class TestDeleteUser:
    @pytest.fixture
    def people(self, app):
        with app.app_context():
            make_user("auth0|root", email="root@example.com", is_admin=True)
            make_product("auth0|alice")
            make_product("auth0|alice", name="Chair")
            make_product("auth0|bob", name="Desk")

    @pytest.fixture
    def root_headers(self, issuer):
        return bearer(issuer.token("auth0|root", email="root@example.com"))

    def test_deletes_the_user_and_their_products_only(self, app, client, people, root_headers):
        response = client.delete("/users/auth0%7Calice", headers=root_headers)
        assert response.status_code == 200
        assert response.json == {"message": "User auth0|alice deleted.", "products_deleted": 2}
        with app.app_context():
            assert db.session.get(User, "auth0|alice") is None
            assert [p.name for p in db.session.query(Product).all()] == ["Desk"]

    def test_unknown_user(self, client, people, root_headers):
        response = client.delete("/users/auth0%7Cnobody", headers=root_headers)
        assert response.status_code == 404

    def test_the_last_admin_stays(self, app, client, people, root_headers):
        response = client.delete("/users/auth0%7Croot", headers=root_headers)
        assert response.status_code == 409
        assert response.json["code"] == "last_admin"
        with app.app_context():
            assert db.session.get(User, "auth0|root") is not None

    def test_an_admin_by_claim_may_delete_the_last_recorded_admin_only_if_another_remains(
        self, app, client, people, issuer
    ):
        claim_admin = bearer(issuer.token("auth0|ops", **{ADMIN_CLAIM: {"is_admin": True}}))
        assert client.delete("/users/auth0%7Croot", headers=claim_admin).status_code == 409

    def test_a_deleted_user_signing_in_again_starts_afresh(self, app, client, people, root_headers, user_headers):
        client.delete("/users/auth0%7Calice", headers=root_headers)
        assert client.get("/me", headers=user_headers).status_code == 200
        with app.app_context():
            assert db.session.query(Product).filter_by(user_id="auth0|alice").count() == 0
