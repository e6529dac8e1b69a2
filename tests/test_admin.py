"""Admin endpoints: who may call them, what they change, and the guards that keep an admin around."""

import pytest

from app.extensions import db
from app.models import Product, User
from tests.factories import bearer, make_product, make_user
from tests.issuer import MANAGEMENT_CLIENT_ID, MANAGEMENT_CLIENT_SECRET

ADMIN_ROUTES = [
    ("get", "/admin/users", None),
    ("post", "/admin/set", {"email": "bob@example.com"}),
    ("post", "/admin/unset", {"email": "bob@example.com"}),
    ("delete", "/users/auth0%7Cbob", None),
]


@pytest.fixture
def people(app):
    """root is an admin in our records; alice and bob are not; alice owns two products. Emails are verified."""
    with app.app_context():
        make_user("auth0|root", email="root@example.com", email_verified=True, is_admin=True)
        make_user("auth0|bob", email="bob@example.com", email_verified=True, name="Bob")
        make_user("auth0|alice", email="alice@example.com", email_verified=True)
        make_product("auth0|alice")
        make_product("auth0|alice", name="Chair")


@pytest.fixture
def root_headers(issuer):
    """An admin by our records only: the token carries no admin claim."""
    return bearer(issuer.token("auth0|root", email="root@example.com"))


def admin_flag(app, user_id: str) -> bool:
    with app.app_context():
        return db.session.get(User, user_id).is_admin


@pytest.mark.parametrize("method, path, body", ADMIN_ROUTES)
def test_admin_routes_need_a_signed_in_admin(client, people, user_headers, method, path, body):
    assert getattr(client, method)(path, json=body).status_code == 401
    response = getattr(client, method)(path, json=body, headers=user_headers)
    assert response.status_code == 403
    assert response.json["code"] == "forbidden"


class TestListUsers:
    def test_lists_users_with_product_counts(self, client, people, root_headers):
        response = client.get("/admin/users", headers=root_headers)
        assert response.status_code == 200
        assert response.headers["X-Total-Count"] == "3"
        rows = {u["user_id"]: u for u in response.json["users"]}
        assert set(rows) == {"auth0|root", "auth0|bob", "auth0|alice"}
        assert rows["auth0|alice"]["product_count"] == 2 and rows["auth0|bob"]["product_count"] == 0
        assert rows["auth0|root"]["is_admin"] is True
        assert set(rows["auth0|bob"]) == {
            "user_id",
            "email",
            "email_verified",
            "name",
            "is_admin",
            "disabled_at",
            "created_at",
            "product_count",
        }
        assert rows["auth0|bob"]["email_verified"] is True and rows["auth0|bob"]["disabled_at"] is None

    def test_shows_disabled_accounts(self, client, people, root_headers):
        client.delete("/users/auth0%7Cbob", headers=root_headers)
        rows = {u["user_id"]: u for u in client.get("/admin/users", headers=root_headers).json["users"]}
        assert rows["auth0|bob"]["disabled_at"] is not None and rows["auth0|alice"]["disabled_at"] is None

    def test_search_and_pages(self, client, people, root_headers):
        found = client.get("/admin/users?q=BOB", headers=root_headers)
        assert [u["user_id"] for u in found.json["users"]] == ["auth0|bob"]
        assert found.headers["X-Total-Count"] == "1"
        second = client.get("/admin/users?per_page=2&page=2", headers=root_headers)
        assert len(second.json["users"]) == 1 and second.headers["X-Total-Count"] == "3"

    def test_admin_by_token_claim(self, client, people, admin_headers):
        assert client.get("/admin/users", headers=admin_headers).status_code == 200

    @pytest.mark.parametrize("query", ["per_page=0", "per_page=101", "page=0", "sort=name", "q=" + "x" * 201])
    def test_bad_queries(self, client, people, root_headers, query):
        assert client.get(f"/admin/users?{query}", headers=root_headers).status_code == 422


class TestGrantAndRevoke:
    def test_grant(self, app, client, people, root_headers):
        response = client.post("/admin/set", json={"email": "Bob@Example.com"}, headers=root_headers)
        assert response.status_code == 200
        assert response.json["user"]["user_id"] == "auth0|bob" and response.json["user"]["is_admin"] is True
        assert response.json["updated"] == ["auth0|bob"]
        assert response.json["skipped_unverified"] == []
        assert response.json["message"] == "Admin granted to 1 account(s)."
        assert response.json["auth0_sync"] == "not_configured"
        assert admin_flag(app, "auth0|bob") is True

    def test_grant_is_idempotent(self, app, client, people, root_headers):
        for _ in range(2):
            assert client.post("/admin/set", json={"email": "bob@example.com"}, headers=root_headers).status_code == 200
        assert admin_flag(app, "auth0|bob") is True

    def test_unknown_email(self, client, people, root_headers):
        response = client.post("/admin/set", json={"email": "nobody@example.com"}, headers=root_headers)
        assert response.status_code == 404
        assert response.json == {"code": "not_found", "message": "No user with this email has signed in yet."}

    @pytest.mark.parametrize(
        "body",
        [
            {},
            {"email": "not-an-email"},
            {"email": 42},
            {"email": None},
            {"email": "a@b\x00c"},
            {"email": "a\ud800@b.c"},
            {"email": "bob@example.com", "user_id": "auth0|bob"},
            {"user_id": ""},
            {"user_id": None},
            {"user_id": "x" * 256},
            {"user_id": "auth0|b\x00b"},
            {"user_id": "auth0|\udfff"},
        ],
    )
    def test_bad_bodies(self, app, client, people, root_headers, body):
        response = client.post("/admin/set", json=body, headers=root_headers)
        assert response.status_code == 422
        assert response.json["code"] == "validation_error"
        assert admin_flag(app, "auth0|bob") is False

    def test_every_account_with_the_verified_email_changes(self, app, client, people, root_headers):
        with app.app_context():
            make_user("google-oauth2|bob", email="bob@example.com", email_verified=True)
        response = client.post("/admin/set", json={"email": "bob@example.com"}, headers=root_headers)
        assert sorted(response.json["updated"]) == ["auth0|bob", "google-oauth2|bob"]
        assert admin_flag(app, "google-oauth2|bob") is True

    def test_revoke(self, app, client, people, root_headers):
        client.post("/admin/set", json={"email": "bob@example.com"}, headers=root_headers)
        response = client.post("/admin/unset", json={"email": "bob@example.com"}, headers=root_headers)
        assert response.status_code == 200
        assert response.json["user"]["is_admin"] is False
        assert admin_flag(app, "auth0|bob") is False

    def test_the_last_admin_cannot_be_revoked(self, app, client, people, root_headers):
        response = client.post("/admin/unset", json={"email": "root@example.com"}, headers=root_headers)
        assert response.status_code == 409
        assert response.json["code"] == "last_admin"
        assert admin_flag(app, "auth0|root") is True

    def test_an_admin_can_step_down_when_another_remains(self, app, client, people, root_headers):
        client.post("/admin/set", json={"email": "bob@example.com"}, headers=root_headers)
        assert client.post("/admin/unset", json={"email": "root@example.com"}, headers=root_headers).status_code == 200
        assert admin_flag(app, "auth0|root") is False
        assert client.get("/admin/users", headers=root_headers).status_code == 403  # no longer an admin


class TestVerifiedEmailsOnly:
    """Issue 11, item 1: an email designates only accounts whose email the identity provider verified."""

    def test_an_impostor_with_an_unverified_copy_of_the_email_is_skipped(
        self, app, client, people, root_headers, issuer
    ):
        alice = bearer(issuer.token("auth0|alice", email="alice@x.example", email_verified=True))
        mallory = bearer(issuer.token("auth0|mallory", email="Alice@X.example", email_verified=False))
        assert client.get("/me", headers=alice).status_code == 200
        assert client.get("/me", headers=mallory).status_code == 200
        response = client.post("/admin/set", json={"email": "alice@x.example"}, headers=root_headers)
        assert response.status_code == 200
        assert response.json["updated"] == ["auth0|alice"]
        assert response.json["skipped_unverified"] == ["auth0|mallory"]
        assert "1 other account(s) with this email were skipped" in response.json["message"]
        assert admin_flag(app, "auth0|alice") is True
        assert admin_flag(app, "auth0|mallory") is False
        assert client.get("/admin/users", headers=mallory).status_code == 403

    def test_only_unverified_accounts_is_a_404_naming_them(self, app, client, people, root_headers, issuer):
        mallory = bearer(issuer.token("auth0|mallory", email="ceo@x.example"))  # no email_verified claim
        client.get("/me", headers=mallory)
        response = client.post("/admin/set", json={"email": "ceo@x.example"}, headers=root_headers)
        assert response.status_code == 404
        assert response.json["code"] == "email_not_verified"
        assert response.json["details"] == {"skipped_unverified": ["auth0|mallory"]}
        assert admin_flag(app, "auth0|mallory") is False

    def test_by_user_id_one_account_changes(self, app, client, people, root_headers):
        with app.app_context():
            make_user("google-oauth2|bob", email="bob@example.com", email_verified=True)
        response = client.post("/admin/set", json={"user_id": "auth0|bob"}, headers=root_headers)
        assert response.status_code == 200
        assert response.json["updated"] == ["auth0|bob"] and response.json["skipped_unverified"] == []
        assert admin_flag(app, "auth0|bob") is True and admin_flag(app, "google-oauth2|bob") is False

    def test_by_user_id_reaches_an_unverified_account(self, app, client, people, root_headers):
        with app.app_context():
            make_user("auth0|carol", email="carol@example.com")
        assert client.post("/admin/set", json={"user_id": "auth0|carol"}, headers=root_headers).status_code == 200
        assert admin_flag(app, "auth0|carol") is True

    def test_unknown_user_id(self, client, people, root_headers):
        response = client.post("/admin/unset", json={"user_id": "auth0|<img src=x>"}, headers=root_headers)
        assert response.status_code == 404
        assert response.json == {"code": "not_found", "message": "The user was not found."}

    def test_revocation_by_user_id_reaches_an_admin_who_changed_email(self, app, client, people, root_headers, issuer):
        with app.app_context():
            make_user("auth0|mallory", email="alice@x.example", is_admin=True)  # granted before this fix
        moved = bearer(issuer.token("auth0|mallory", email="elsewhere@evil.example", email_verified=True))
        assert client.get("/me", headers=moved).json["email"] == "elsewhere@evil.example"
        assert client.post("/admin/unset", json={"email": "alice@x.example"}, headers=root_headers).status_code == 404
        response = client.post("/admin/unset", json={"user_id": "auth0|mallory"}, headers=root_headers)
        assert response.status_code == 200 and response.json["updated"] == ["auth0|mallory"]
        assert admin_flag(app, "auth0|mallory") is False
        assert client.get("/admin/users", headers=moved).status_code == 403

    def test_the_last_admin_guard_holds_by_user_id(self, app, client, people, root_headers):
        response = client.post("/admin/unset", json={"user_id": "auth0|root"}, headers=root_headers)
        assert response.status_code == 409 and response.json["code"] == "last_admin"
        assert admin_flag(app, "auth0|root") is True

    def test_a_disabled_admin_does_not_count_as_the_one_remaining(self, app, client, people, root_headers):
        client.post("/admin/set", json={"user_id": "auth0|bob"}, headers=root_headers)
        assert client.delete("/users/auth0%7Cbob", headers=root_headers).status_code == 200
        response = client.post("/admin/unset", json={"user_id": "auth0|root"}, headers=root_headers)
        assert response.status_code == 409 and response.json["code"] == "last_admin"
        assert admin_flag(app, "auth0|root") is True


class TestCheck:
    def test_says_whether_the_caller_is_admin(self, client, people, root_headers, user_headers, admin_headers):
        assert client.get("/admin/check", headers=root_headers).json == {"is_admin": True}
        assert client.get("/admin/check", headers=admin_headers).json == {"is_admin": True}
        assert client.get("/admin/check", headers=user_headers).json == {"is_admin": False}
        assert client.get("/admin/check").status_code == 401


class TestManagementApi:
    @pytest.fixture
    def synced_app(self, make_app):
        return make_app(
            API_MANAGEMENT_CLIENT_ID=MANAGEMENT_CLIENT_ID, API_MANAGEMENT_CLIENT_SECRET=MANAGEMENT_CLIENT_SECRET
        )

    @pytest.fixture
    def synced(self, synced_app):
        with synced_app.app_context():
            make_user("auth0|root", email="root@example.com", email_verified=True, is_admin=True)
            make_user("auth0|bob", email="bob@example.com", email_verified=True)
        return synced_app.test_client()

    def test_grant_and_revoke_write_app_metadata(self, synced, issuer, root_headers):
        granted = synced.post("/admin/set", json={"email": "bob@example.com"}, headers=root_headers)
        revoked = synced.post("/admin/unset", json={"email": "bob@example.com"}, headers=root_headers)
        assert granted.json["auth0_sync"] == "updated" and revoked.json["auth0_sync"] == "updated"
        assert issuer.management_patches == [
            ("auth0|bob", {"app_metadata": {"is_admin": True}}),
            ("auth0|bob", {"app_metadata": {"is_admin": False}}),
        ]
        assert issuer.management_token_requests == 1  # the token is cached

    def test_failure_is_reported_and_the_local_change_stands(self, synced_app, synced, issuer, root_headers):
        issuer.management_mode = "error"
        response = synced.post("/admin/set", json={"email": "bob@example.com"}, headers=root_headers)
        assert response.status_code == 200
        assert response.json["auth0_sync"] == "failed"
        assert admin_flag(synced_app, "auth0|bob") is True
        assert issuer.management_patches == []

    def test_a_revoked_token_is_renewed_once(self, synced, issuer, root_headers):
        synced.post("/admin/set", json={"email": "bob@example.com"}, headers=root_headers)
        issuer.management_mode = "reject"
        response = synced.post("/admin/unset", json={"email": "bob@example.com"}, headers=root_headers)
        assert response.json["auth0_sync"] == "updated"
        assert issuer.management_token_requests == 2

    def test_wrong_credentials_fail_cleanly(self, make_app, issuer, root_headers):
        app = make_app(API_MANAGEMENT_CLIENT_ID="wrong", API_MANAGEMENT_CLIENT_SECRET="wrong")
        with app.app_context():
            make_user("auth0|root", email="root@example.com", is_admin=True)
            make_user("auth0|bob", email="bob@example.com")
        response = app.test_client().post("/admin/set", json={"user_id": "auth0|bob"}, headers=root_headers)
        assert response.status_code == 200 and response.json["auth0_sync"] == "failed"
        assert admin_flag(app, "auth0|bob") is True

    def test_deleting_blocks_the_account_at_auth0_and_restoring_unblocks_it(self, synced, issuer, root_headers):
        deleted = synced.delete("/users/auth0%7Cbob", headers=root_headers)
        restored = synced.post("/users/auth0%7Cbob/restore", headers=root_headers)
        assert deleted.json["auth0_sync"] == "updated" and restored.json["auth0_sync"] == "updated"
        assert issuer.management_patches == [("auth0|bob", {"blocked": True}), ("auth0|bob", {"blocked": False})]

    def test_a_failed_block_is_reported_and_the_account_is_disabled_here(
        self, synced_app, synced, issuer, root_headers
    ):
        issuer.management_mode = "error"
        response = synced.delete("/users/auth0%7Cbob", headers=root_headers)
        assert response.status_code == 200 and response.json["auth0_sync"] == "failed"
        with synced_app.app_context():
            assert db.session.get(User, "auth0|bob").disabled_at is not None


class TestARevocationIsFinal:
    """An admin's write to someone else's product reads the admin's row in its own statement."""

    def test_a_revoked_admin_cannot_change_anothers_product(self, app, client, people, issuer):
        with app.app_context():
            make_user("auth0|mod", email="mod@example.com", is_admin=True)
            product_id = db.session.scalar(db.select(Product.id).where(Product.user_id == "auth0|alice").limit(1))
        mod = bearer(issuer.token("auth0|mod", email="mod@example.com"))
        assert client.put(f"/products/{product_id}", json={"quantity": 5}, headers=mod).status_code == 200
        with app.app_context():  # revoked elsewhere (another worker, the CLI on another host)
            db.session.execute(db.text("UPDATE users SET is_admin = false WHERE user_id = 'auth0|mod'"))
            db.session.commit()
        for method in ("put", "delete"):
            response = getattr(client, method)(f"/products/{product_id}", json={"quantity": 6}, headers=mod)
            assert response.status_code == 403 and response.json["code"] == "forbidden"
        with app.app_context():
            assert db.session.get(Product, product_id).quantity == 5
        assert client.post("/admin/set", json={"user_id": "auth0|bob"}, headers=mod).status_code == 403
        assert not admin_flag(app, "auth0|bob")

    def test_an_admin_by_the_tokens_claim_keeps_the_right(self, app, client, people, admin_headers):
        with app.app_context():
            product_id = db.session.scalar(db.select(Product.id).where(Product.user_id == "auth0|alice").limit(1))
        response = client.put(f"/products/{product_id}", json={"quantity": 4}, headers=admin_headers)
        assert response.status_code == 200 and response.json["quantity"] == 4
