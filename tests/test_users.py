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
        assert response.headers["WWW-Authenticate"].startswith('Bearer error_description="Authentication is required')


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


class TestEmailVerified:
    """email_verified is stored from the tokens and refreshed with the email."""

    def stored(self, app, user_id="auth0|alice") -> tuple:
        with app.app_context():
            user = db.session.get(User, user_id)
            return user.email, user.email_verified

    def test_recorded_from_the_token(self, app, client, issuer):
        me = client.get("/me", headers=bearer(issuer.token(email="alice@example.com", email_verified=True)))
        assert me.status_code == 200 and me.json["email_verified"] is True
        assert self.stored(app) == ("alice@example.com", True)

    @pytest.mark.parametrize("claim", [False, "true", 1, None])
    def test_anything_but_true_is_unverified(self, app, client, issuer, claim):
        client.get("/me", headers=bearer(issuer.token(email="alice@example.com", email_verified=claim)))
        assert self.stored(app) == ("alice@example.com", False)

    def test_a_new_email_without_the_claim_is_unverified(self, app, client, issuer):
        client.get("/me", headers=bearer(issuer.token(email="alice@example.com", email_verified=True)))
        client.get("/me", headers=bearer(issuer.token(email="alice@elsewhere.example")))
        assert self.stored(app) == ("alice@elsewhere.example", False)

    def test_the_same_email_without_the_claim_stays_verified(self, app, client, issuer):
        client.get("/me", headers=bearer(issuer.token(email="alice@example.com", email_verified=True)))
        client.get("/me", headers=bearer(issuer.token(email="alice@example.com")))
        client.get("/me", headers=bearer(issuer.token()))  # no email at all
        assert self.stored(app) == ("alice@example.com", True)

    def test_the_provider_can_withdraw_it(self, app, client, issuer):
        client.get("/me", headers=bearer(issuer.token(email="alice@example.com", email_verified=True)))
        client.get("/me", headers=bearer(issuer.token(email="alice@example.com", email_verified=False)))
        assert self.stored(app) == ("alice@example.com", False)


class TestClaimValues:
    """Issue 11, item 11: profile claims are normalised, never a 500 (both databases; `sub`: see test_auth)."""

    @pytest.mark.parametrize(
        "email", ["alice\x00@example.com", "alice@exa\nmple.com", "\ud800@example.com", "a" * 310 + "@example.com", 42]
    )
    def test_an_email_that_cannot_be_an_address_is_treated_as_absent(self, app, client, issuer, email):
        token = bearer(issuer.escaped_token(email=email, email_verified=True, name="Alice"))
        response = client.get("/me", headers=token)
        assert response.status_code == 200
        assert (response.json["email"], response.json["email_verified"]) == (None, False)
        with app.app_context():
            assert db.session.get(User, "auth0|alice").email is None

    @pytest.mark.parametrize(
        "name, stored",
        [
            ("Al\x00ice", "Alice"),
            ("Alice\ud800", "Alice"),
            ("\udfffAl\x1bice\x7f", "Alice"),
            ("Alice\nLiddell", "Alice Liddell"),
            ("\x00\ud800", None),
            ("A" * 300, "A" * 255),
            (["Alice"], None),
        ],
    )
    def test_a_name_is_cleaned(self, app, client, issuer, name, stored):
        response = client.get("/me", headers=bearer(issuer.escaped_token(email="alice@example.com", name=name)))
        assert response.status_code == 200 and response.json["name"] == stored
        with app.app_context():
            assert db.session.get(User, "auth0|alice").name == stored

    def test_a_known_user_is_refreshed_with_cleaned_values_only(self, app, client, issuer, user_headers):
        client.get("/me", headers=user_headers)
        token = bearer(issuer.token(email="alice\x00@example.com", name="Ali\x00ce L."))
        assert client.get("/me", headers=token).status_code == 200
        with app.app_context():
            user = db.session.get(User, "auth0|alice")
            assert (user.email, user.name) == ("alice@example.com", "Alice L.")


class TestDeleteUser:
    """Issue 11, item 12: deleting a user removes their products and disables the account until restored."""

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

    def test_deletes_the_products_and_disables_the_account(self, app, client, people, root_headers):
        response = client.delete("/users/auth0%7Calice", headers=root_headers)
        assert response.status_code == 200
        body = response.json
        assert body["message"] == "The user's products were deleted and the account disabled."
        assert (body["products_deleted"], body["auth0_sync"]) == (2, "not_configured")
        with app.app_context():
            user = db.session.get(User, "auth0|alice")
            assert user.disabled_at is not None
            assert body["disabled_at"].startswith(user.disabled_at.isoformat()[:19])
            assert [p.name for p in db.session.query(Product).all()] == ["Desk"]

    def test_deleting_again_keeps_the_first_date(self, app, client, people, root_headers):
        first = client.delete("/users/auth0%7Calice", headers=root_headers).json
        again = client.delete("/users/auth0%7Calice", headers=root_headers)
        assert again.status_code == 200
        assert again.json["products_deleted"] == 0 and again.json["disabled_at"] == first["disabled_at"]

    def test_unknown_user(self, client, people, root_headers):
        response = client.delete("/users/auth0%7Cnobody", headers=root_headers)
        assert response.status_code == 404
        assert response.json == {"code": "not_found", "message": "The user was not found."}

    @pytest.mark.parametrize("user_id", ["auth0%7Ca%00b", "a%0Ab", "x" * 256])
    def test_a_user_id_no_token_could_carry_is_422(self, client, people, root_headers, user_id):
        assert client.delete(f"/users/{user_id}", headers=root_headers).status_code == 422
        assert client.post(f"/users/{user_id}/restore", headers=root_headers).status_code == 422

    def test_the_last_admin_stays(self, app, client, people, root_headers):
        response = client.delete("/users/auth0%7Croot", headers=root_headers)
        assert response.status_code == 409
        assert response.json["code"] == "last_admin"
        with app.app_context():
            assert db.session.get(User, "auth0|root").disabled_at is None

    def test_an_admin_by_claim_may_delete_the_last_recorded_admin_only_if_another_remains(
        self, app, client, people, issuer
    ):
        claim_admin = bearer(issuer.token("auth0|ops", **{ADMIN_CLAIM: {"is_admin": True}}))
        assert client.delete("/users/auth0%7Croot", headers=claim_admin).status_code == 409

    def test_the_next_token_of_a_deleted_user_is_refused_not_welcomed(
        self, app, client, people, root_headers, user_headers
    ):
        client.delete("/users/auth0%7Calice", headers=root_headers)
        for method, path in [("get", "/me"), ("post", "/products/create"), ("get", "/admin/check")]:
            response = getattr(client, method)(
                path, headers=user_headers, json={"name": "Lamp", "price": 1, "quantity": 1}
            )
            assert response.status_code == 403
            assert response.json == {
                "code": "account_disabled",
                "message": "This account has been disabled by an administrator.",
            }
        with app.app_context():
            assert db.session.query(Product).filter_by(user_id="auth0|alice").count() == 0
            assert db.session.get(User, "auth0|alice").disabled_at is not None

    def test_admin_rights_in_the_token_do_not_override_it(self, app, client, people, root_headers, issuer):
        client.delete("/users/auth0%7Calice", headers=root_headers)
        token = bearer(issuer.token("auth0|alice", **{ADMIN_CLAIM: {"is_admin": True}}))
        assert client.get("/admin/users", headers=token).json["code"] == "account_disabled"

    def test_restore(self, app, client, people, root_headers, user_headers):
        client.delete("/users/auth0%7Calice", headers=root_headers)
        response = client.post("/users/auth0%7Calice/restore", headers=root_headers)
        assert response.status_code == 200
        assert response.json["user"]["user_id"] == "auth0|alice" and response.json["user"]["disabled_at"] is None
        assert response.json["auth0_sync"] == "not_configured"
        assert client.get("/me", headers=user_headers).status_code == 200
        assert client.post("/users/auth0%7Calice/restore", headers=root_headers).status_code == 200  # idempotent
        with app.app_context():
            assert db.session.get(User, "auth0|alice").disabled_at is None

    def test_restore_needs_an_admin_and_a_known_user(self, client, people, root_headers, user_headers):
        assert client.post("/users/auth0%7Cbob/restore", headers=user_headers).status_code == 403
        assert client.post("/users/auth0%7Cbob/restore").status_code == 401
        missing = client.post("/users/auth0%7Cnobody/restore", headers=root_headers)
        assert missing.status_code == 404 and missing.json["message"] == "The user was not found."


DISABLE_ALICE = "UPDATE users SET disabled_at = CURRENT_TIMESTAMP WHERE user_id = 'auth0|alice'"


class TestAFinalDisable:
    """Writes read the account's state in their own statement: a cache that still remembers the
    account as enabled (as another worker's would) lets no write through."""

    @pytest.fixture
    def disabled_behind_the_cache(self, app, client, user_headers):
        """alice's identity cached as enabled, then her account disabled in the database directly (as
        another worker or host would: no ORM event reaches this process's cache)."""
        with app.app_context():
            product_id = make_product("auth0|alice").id
        assert client.get("/me", headers=user_headers).status_code == 200  # cached
        with app.app_context():
            db.session.execute(
                db.text("UPDATE users SET disabled_at = CURRENT_TIMESTAMP WHERE user_id = 'auth0|alice'")
            )
            db.session.commit()
        assert client.get("/me", headers=user_headers).status_code == 200  # reads may lag: still cached
        return product_id

    def assert_untouched(self, app, product_id: int) -> None:
        with app.app_context():
            product = db.session.get(Product, product_id)
            assert (product.quantity, product.version) == (3, 1)
            assert db.session.query(Product).count() == 1

    def test_a_create_is_refused(self, app, client, user_headers, disabled_behind_the_cache):
        response = client.post("/products", json={"name": "Late", "price": "1", "quantity": 1}, headers=user_headers)
        assert response.status_code == 403 and response.json["code"] == "account_disabled"
        self.assert_untouched(app, disabled_behind_the_cache)

    def test_a_replayed_create_is_refused(self, app, client, user_headers):
        key = {**user_headers, "Idempotency-Key": "k-1"}
        first = client.post("/products", json={"name": "Early", "price": "1", "quantity": 1}, headers=key)
        assert first.status_code == 201
        with app.app_context():
            db.session.execute(
                db.text("UPDATE users SET disabled_at = CURRENT_TIMESTAMP WHERE user_id = 'auth0|alice'")
            )
            db.session.commit()
        replay = client.post("/products", json={"name": "Early", "price": "1", "quantity": 1}, headers=key)
        assert replay.status_code == 403 and replay.json["code"] == "account_disabled"

    @pytest.mark.parametrize("method", ["put", "patch", "delete"])
    def test_an_update_or_delete_is_refused(self, app, client, user_headers, disabled_behind_the_cache, method):
        path = f"/products/{disabled_behind_the_cache}"
        response = getattr(client, method)(path, json={"quantity": 9}, headers=user_headers)
        assert response.status_code == 403 and response.json["code"] == "account_disabled"
        self.assert_untouched(app, disabled_behind_the_cache)

    def test_after_a_restore_writes_go_through_again(self, app, client, user_headers, disabled_behind_the_cache):
        with app.app_context():
            db.session.execute(db.text("UPDATE users SET disabled_at = NULL WHERE user_id = 'auth0|alice'"))
            db.session.commit()
        response = client.put(f"/products/{disabled_behind_the_cache}", json={"quantity": 9}, headers=user_headers)
        assert response.status_code == 200 and response.json["quantity"] == 9
