"""The audit trail: every privileged action recorded in its own transaction, append-only, readable by admins."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from app.extensions import db
from app.models import AuditRecord, Product, User
from tests.databases import needs_postgres
from tests.factories import bearer, make_product, make_user
from tests.signin import sign_in

RECORD_FIELDS = {
    "id",
    "at",
    "actor_id",
    "actor_email",
    "action",
    "outcome",
    "target_type",
    "target_id",
    "subject_user_id",
    "request_id",
    "client_address",
    "changes",
}


@pytest.fixture
def people(app):
    """root is an admin by our records; bob and alice are not; alice owns two products."""
    with app.app_context():
        make_user("auth0|root", email="root@example.com", email_verified=True, is_admin=True)
        make_user("auth0|bob", email="bob@example.com", email_verified=True, name="Bob")
        make_user("auth0|alice", email="alice@example.com", email_verified=True)
        ids = [make_product("auth0|alice").id, make_product("auth0|alice", name="Chair").id]
    return ids


@pytest.fixture
def root_headers(issuer):
    return bearer(issuer.token("auth0|root", email="root@example.com"))


@pytest.fixture
def alice(issuer):
    return bearer(issuer.token("auth0|alice", email="alice@example.com"))


def records(app) -> list[AuditRecord]:
    with app.app_context():
        rows = db.session.scalars(db.select(AuditRecord).order_by(AuditRecord.id)).all()
        db.session.expunge_all()
        return rows


def user(app, user_id: str) -> User:
    with app.app_context():
        found = db.session.get(User, user_id)
        db.session.expunge_all()
        return found


def assert_recent(moment: datetime) -> None:
    assert moment.tzinfo is not None and moment.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - moment) < timedelta(seconds=30)


def assert_record(record: AuditRecord, **expected) -> None:
    """Every field: the ones given, the request's defaults, and the time from the database."""
    defaults = {"actor_id": "auth0|root", "actor_email": "root@example.com", "outcome": "done"}
    defaults.update({"client_address": "127.0.0.1", "target_type": "user"})
    for field, value in {**defaults, **expected}.items():
        assert getattr(record, field) == value, (field, getattr(record, field), value)
    assert_recent(record.at)


class TestAdminGrants:
    def test_grant_by_email_records_each_account_and_the_unverified_ones_left_out(
        self, app, client, people, root_headers
    ):
        with app.app_context():
            make_user("auth0|bob-twin", email="BOB@example.com", email_verified=False)
        headers = {**root_headers, "X-Request-ID": "grant-by-email-1"}
        response = client.post("/admin/set", json={"email": "bob@example.com"}, headers=headers)
        assert response.status_code == 200 and response.json["skipped_unverified"] == ["auth0|bob-twin"]
        [record] = records(app)
        assert_record(
            record,
            action="admin.grant",
            target_id="auth0|bob",
            subject_user_id="auth0|bob",
            request_id="grant-by-email-1",
            changes={
                "is_admin": [False, True],
                "target_email": "bob@example.com",
                "addressed": {"email": "bob@example.com"},
                "skipped_unverified": ["auth0|bob-twin"],
            },
        )
        assert user(app, "auth0|bob").is_admin and not user(app, "auth0|bob-twin").is_admin

    def test_grant_by_id_reaches_an_unverified_account(self, app, client, people, root_headers):
        with app.app_context():
            make_user("auth0|eve", email="eve@example.com", email_verified=False)
        response = client.post("/admin/set", json={"user_id": "auth0|eve"}, headers=root_headers)
        assert response.status_code == 200
        [record] = records(app)
        assert_record(
            record,
            action="admin.grant",
            target_id="auth0|eve",
            subject_user_id="auth0|eve",
            request_id=response.headers["X-Request-ID"],
            changes={
                "is_admin": [False, True],
                "target_email": "eve@example.com",
                "addressed": {"user_id": "auth0|eve"},
            },
        )

    def test_revoke_is_recorded(self, app, client, people, root_headers):
        client.post("/admin/set", json={"user_id": "auth0|bob"}, headers=root_headers)
        response = client.post("/admin/unset", json={"email": "bob@example.com"}, headers=root_headers)
        assert response.status_code == 200
        grant, revoke = records(app)
        assert grant.action == "admin.grant" and grant.id < revoke.id
        assert_record(
            revoke,
            action="admin.revoke",
            target_id="auth0|bob",
            subject_user_id="auth0|bob",
            request_id=response.headers["X-Request-ID"],
            changes={
                "is_admin": [True, False],
                "target_email": "bob@example.com",
                "addressed": {"email": "bob@example.com"},
            },
        )
        assert not user(app, "auth0|bob").is_admin

    def test_the_last_admins_revocation_is_refused_and_recorded_as_refused(self, app, client, people, root_headers):
        response = client.post("/admin/unset", json={"user_id": "auth0|root"}, headers=root_headers)
        assert response.status_code == 409 and response.json["code"] == "last_admin"
        [record] = records(app)
        assert_record(
            record,
            action="admin.revoke",
            outcome="refused",
            target_id="auth0|root",
            subject_user_id="auth0|root",
            request_id=response.headers["X-Request-ID"],
            changes={"reason": "last_admin", "addressed": {"user_id": "auth0|root"}},
        )
        assert user(app, "auth0|root").is_admin

    @pytest.mark.parametrize(
        "path, body, who, status",
        [
            ("/admin/set", {"user_id": "auth0|bob"}, "alice", 403),  # not an admin
            ("/admin/set", {"user_id": "auth0|nobody"}, "root", 404),
            ("/admin/set", {"email": "nobody@example.com"}, "root", 404),
            ("/admin/set", {"email": "bob@example.com", "user_id": "auth0|bob"}, "root", 422),
            ("/admin/unset", {"user_id": "auth0|nobody"}, "root", 404),
        ],
    )
    def test_a_failed_action_leaves_no_record(self, app, client, people, issuer, path, body, who, status):
        headers = bearer(issuer.token(f"auth0|{who}", email=f"{who}@example.com"))
        assert client.post(path, json=body, headers=headers).status_code == status
        assert records(app) == []
        assert not user(app, "auth0|bob").is_admin

    def test_only_unverified_holders_of_the_email_is_a_404_without_a_record(self, app, client, people, root_headers):
        with app.app_context():
            make_user("auth0|eve", email="eve@example.com", email_verified=False)
        response = client.post("/admin/set", json={"email": "eve@example.com"}, headers=root_headers)
        assert response.status_code == 404 and response.json["code"] == "email_not_verified"
        assert records(app) == []


class TestAccounts:
    def test_disable_records_the_deleted_products_last_content(self, app, client, people, root_headers):
        response = client.delete("/users/auth0%7Calice", headers=root_headers)
        assert response.status_code == 200 and response.json["products_deleted"] == 2
        [record] = records(app)
        disabled_at = user(app, "auth0|alice").disabled_at
        assert disabled_at is not None
        products = record.changes.pop("products_deleted")
        assert_record(
            record,
            action="user.disable",
            target_id="auth0|alice",
            subject_user_id="auth0|alice",
            request_id=response.headers["X-Request-ID"],
            changes={
                "disabled_at": [None, disabled_at.isoformat()],
                "target_email": "alice@example.com",
                "sessions_ended": 0,
            },
        )
        assert [p["id"] for p in products] == people
        assert [p["name"] for p in products] == ["Lamp", "Chair"]
        assert products[0]["price"] == "19.99" and products[0]["user_id"] == "auth0|alice"
        assert products[0]["description"] == "A desk lamp" and products[0]["version"] == 1
        with app.app_context():
            assert db.session.query(Product).count() == 0

    def test_restore_is_recorded(self, app, client, people, root_headers):
        client.delete("/users/auth0%7Cbob", headers=root_headers)
        disabled_at = user(app, "auth0|bob").disabled_at
        response = client.post("/users/auth0%7Cbob/restore", headers=root_headers)
        assert response.status_code == 200
        disable, restore = records(app)
        assert disable.action == "user.disable"
        assert_record(
            restore,
            action="user.restore",
            target_id="auth0|bob",
            subject_user_id="auth0|bob",
            request_id=response.headers["X-Request-ID"],
            changes={"disabled_at": [disabled_at.isoformat(), None], "target_email": "bob@example.com"},
        )
        assert user(app, "auth0|bob").disabled_at is None

    def test_disabling_the_last_admin_is_refused_and_recorded_as_refused(self, app, client, people, root_headers):
        response = client.delete("/users/auth0%7Croot", headers=root_headers)
        assert response.status_code == 409
        [record] = records(app)
        assert_record(
            record,
            action="user.disable",
            outcome="refused",
            target_id="auth0|root",
            subject_user_id="auth0|root",
            request_id=response.headers["X-Request-ID"],
            changes={"reason": "last_admin"},
        )
        assert user(app, "auth0|root").disabled_at is None

    @pytest.mark.parametrize("who, target, status", [("alice", "auth0%7Cbob", 403), ("root", "auth0%7Cnobody", 404)])
    def test_a_failed_disable_or_restore_leaves_no_record(self, app, client, people, issuer, who, target, status):
        headers = bearer(issuer.token(f"auth0|{who}", email=f"{who}@example.com"))
        assert client.delete(f"/users/{target}", headers=headers).status_code == status
        assert client.post(f"/users/{target}/restore", headers=headers).status_code == status
        assert records(app) == []

    def test_through_the_browser_session(self, app, client, people, issuer):
        issuer.login_as = {"sub": "auth0|root", "email": "root@example.com", "name": "Root", "email_verified": True}
        assert sign_in(client).status_code == 303
        response = client.delete("/users/auth0%7Cbob", headers={"Origin": "http://localhost"})
        assert response.status_code == 200
        granted = client.post("/admin/set", json={"user_id": "auth0|alice"}, headers={"Origin": "http://localhost"})
        assert granted.status_code == 200
        disable, grant = records(app)
        assert (disable.action, disable.target_id, disable.actor_id) == ("user.disable", "auth0|bob", "auth0|root")
        assert (grant.action, grant.target_id, grant.actor_email) == ("admin.grant", "auth0|alice", "root@example.com")
        assert disable.request_id == response.headers["X-Request-ID"] and disable.client_address == "127.0.0.1"
        assert grant.request_id == granted.headers["X-Request-ID"]


class TestProductsOfOthers:
    def test_an_admin_changing_anothers_product_is_recorded(self, app, client, people, root_headers):
        product_id = people[0]
        response = client.put(f"/products/{product_id}", json={"price": "25.00", "name": "Lamp"}, headers=root_headers)
        assert response.status_code == 200
        [record] = records(app)
        assert_record(
            record,
            action="product.update",
            target_type="product",
            target_id=str(product_id),
            subject_user_id="auth0|alice",
            request_id=response.headers["X-Request-ID"],
            changes={"price": ["19.99", "25.00"], "version": [1, 2]},
        )

    def test_an_admin_deleting_anothers_product_records_its_last_content(self, app, client, people, root_headers):
        product_id = people[1]
        with app.app_context():
            before = db.session.get(Product, product_id)
            created_at = before.created_at.isoformat()
        response = client.delete(f"/products/{product_id}", headers=root_headers)
        assert response.status_code == 200
        [record] = records(app)
        assert record.changes["product"].pop("updated_at")
        assert_record(
            record,
            action="product.delete",
            target_type="product",
            target_id=str(product_id),
            subject_user_id="auth0|alice",
            request_id=response.headers["X-Request-ID"],
            changes={
                "product": {
                    "id": product_id,
                    "name": "Chair",
                    "description": "A desk lamp",
                    "price": "19.99",
                    "quantity": 3,
                    "user_id": "auth0|alice",
                    "version": 1,
                    "created_at": created_at,
                }
            },
        )
        with app.app_context():
            assert db.session.get(Product, product_id) is None

    def test_owners_writes_and_an_admins_own_products_are_not_audit_events(
        self, app, client, people, root_headers, alice
    ):
        assert client.put(f"/products/{people[0]}", json={"quantity": 9}, headers=alice).status_code == 200
        assert client.delete(f"/products/{people[1]}", headers=alice).status_code == 200
        created = client.post("/products", json={"name": "Desk", "price": "5", "quantity": 1}, headers=root_headers)
        own = created.json["id"]
        assert client.patch(f"/products/{own}", json={"quantity": 2}, headers=root_headers).status_code == 200
        assert client.delete(f"/products/{own}", headers=root_headers).status_code == 200
        assert records(app) == []

    def test_a_refused_product_write_leaves_no_record(self, app, client, people, root_headers):
        product_id = people[0]
        stale = client.put(f"/products/{product_id}", json={"quantity": 1}, headers={**root_headers, "If-Match": "7"})
        assert stale.status_code == 412
        assert client.delete("/products/999999", headers=root_headers).status_code == 404
        bad = client.put(f"/products/{product_id}", json={"price": -1}, headers=root_headers)
        assert bad.status_code == 422
        assert records(app) == []


class TestCommandLine:
    def test_grant_and_revoke_are_recorded_with_the_cli_as_actor(self, app, people):
        runner = app.test_cli_runner()
        assert runner.invoke(args=["admin", "grant", "bob@example.com"]).exit_code == 0
        assert runner.invoke(args=["admin", "revoke", "--user-id", "auth0|bob"]).exit_code == 0
        grant, revoke = records(app)
        for record, action, before in ((grant, "admin.grant", False), (revoke, "admin.revoke", True)):
            assert record.request_id.startswith("cli-") and len(record.request_id) == 20
            assert_record(
                record,
                actor_id="cli",
                actor_email=None,
                client_address=None,
                action=action,
                target_id="auth0|bob",
                subject_user_id="auth0|bob",
                request_id=record.request_id,
                changes={
                    "is_admin": [before, not before],
                    "target_email": "bob@example.com",
                    "addressed": {"email": "bob@example.com"} if action == "admin.grant" else {"user_id": "auth0|bob"},
                },
            )

    def test_the_last_admin_refusal_at_the_cli_is_recorded(self, app, people):
        result = app.test_cli_runner().invoke(args=["admin", "revoke", "root@example.com"])
        assert result.exit_code != 0 and "last admin" in result.output
        [record] = records(app)
        assert (record.actor_id, record.action, record.outcome) == ("cli", "admin.revoke", "refused")
        assert user(app, "auth0|root").is_admin

    def test_a_failed_cli_action_leaves_no_record(self, app, people):
        assert app.test_cli_runner().invoke(args=["admin", "grant", "nobody@example.com"]).exit_code != 0
        assert records(app) == []


class TestAppendOnly:
    @pytest.fixture
    def one_record(self, app, client, people, root_headers):
        assert client.post("/admin/set", json={"user_id": "auth0|bob"}, headers=root_headers).status_code == 200
        return records(app)[0].id

    @pytest.mark.parametrize(
        "statement",
        [
            "UPDATE audit_log SET actor_id = 'someone-else'",
            "UPDATE audit_log SET changes = '{}'",
            "DELETE FROM audit_log",
        ],
    )
    def test_update_and_delete_are_refused_by_the_database(self, app, one_record, statement):
        with app.app_context():
            with pytest.raises(DBAPIError, match="append-only"):
                db.session.execute(text(statement))
            db.session.rollback()
        [record] = records(app)
        assert (
            record.id == one_record and record.actor_id == "auth0|root" and record.changes["is_admin"] == [False, True]
        )

    @needs_postgres
    def test_truncate_is_refused_on_postgresql(self, app, one_record):
        with app.app_context():
            with pytest.raises(DBAPIError, match="append-only"):
                db.session.execute(text("TRUNCATE audit_log"))
            db.session.rollback()
        assert len(records(app)) == 1

    def test_prune_deletes_only_old_records_and_is_itself_recorded(self, app, one_record):
        with app.app_context():  # a record from long ago, as if written then (INSERT is allowed)
            old = datetime(2020, 1, 1, tzinfo=UTC)
            db.session.add(
                AuditRecord(
                    at=old,
                    actor_id="cli",
                    action="admin.grant",
                    outcome="done",
                    target_type="user",
                    target_id="auth0|bob",
                    changes={},
                )
            )
            db.session.commit()
        assert len(records(app)) == 2
        kept = app.test_cli_runner().invoke(args=["audit", "prune"])  # AUDIT_RETENTION_DAYS=0: keep all
        assert kept.exit_code == 0 and "kept" in kept.output
        assert len(records(app)) == 2
        app.config["AUDIT_RETENTION_DAYS"] = 365
        result = app.test_cli_runner().invoke(args=["audit", "prune"])
        assert result.exit_code == 0, result.output
        assert "1 audit record(s) older than 365 day(s) deleted" in result.output
        survivor, prune = records(app)
        assert survivor.id == one_record
        assert (prune.actor_id, prune.action, prune.target_type, prune.target_id) == (
            "cli",
            "audit.prune",
            "audit",
            "audit_log",
        )
        assert prune.changes == {"older_than_days": 365, "deleted": 1}
        with app.app_context():  # the table is append-only again afterwards
            with pytest.raises(DBAPIError, match="append-only"):
                db.session.execute(text("DELETE FROM audit_log"))
            db.session.rollback()


class TestReading:
    @pytest.fixture
    def trail(self, app, client, people, root_headers):
        """Five records: grant bob, grant alice, revoke bob, an admin edit of alice's lamp, disable bob."""
        calls = [
            client.post("/admin/set", json={"user_id": "auth0|bob"}, headers=root_headers),
            client.post("/admin/set", json={"user_id": "auth0|alice"}, headers=root_headers),
            client.post("/admin/unset", json={"user_id": "auth0|bob"}, headers=root_headers),
            client.put(f"/products/{people[0]}", json={"quantity": 7}, headers=root_headers),
            client.delete("/users/auth0%7Cbob", headers=root_headers),
        ]
        assert [r.status_code for r in calls] == [200] * 5
        return [r.id for r in records(app)]

    def test_admins_read_newest_first_with_every_field(self, client, trail, root_headers):
        response = client.get("/admin/audit", headers=root_headers)
        assert response.status_code == 200
        assert response.headers["X-Total-Count"] == "5"
        rows = response.json["records"]
        assert [r["id"] for r in rows] == trail[::-1]
        assert set(rows[0]) == RECORD_FIELDS
        assert rows[0]["action"] == "user.disable" and rows[0]["client_address"] == "127.0.0.1"
        assert rows[0]["at"].endswith(("Z", "+00:00"))

    @pytest.mark.parametrize(
        "query, expected",
        [
            ("actor=auth0%7Croot", [0, 1, 2, 3, 4]),
            ("actor=auth0%7Cbob", []),
            ("target=auth0%7Cbob", [0, 2, 4]),
            ("action=admin.grant", [0, 1]),
            ("action=product.update", [3]),
            ("target=auth0%7Cbob&action=admin.revoke", [2]),
        ],
    )
    def test_filters(self, client, trail, root_headers, query, expected):
        response = client.get(f"/admin/audit?{query}", headers=root_headers)
        assert response.status_code == 200
        assert [r["id"] for r in response.json["records"]] == [trail[i] for i in reversed(expected)]
        assert response.headers["X-Total-Count"] == str(len(expected))

    def test_since_and_until(self, app, client, trail, root_headers):
        at = [r.at for r in records(app)]
        since = (at[0] - timedelta(seconds=1)).isoformat()
        later = (max(at) + timedelta(seconds=1)).isoformat()
        everything = client.get("/admin/audit", query_string={"since": since}, headers=root_headers)
        assert len(everything.json["records"]) == 5
        assert client.get("/admin/audit", query_string={"since": later}, headers=root_headers).json["records"] == []
        before = client.get("/admin/audit", query_string={"until": since}, headers=root_headers)
        assert before.status_code == 200 and before.json["records"] == []

    def test_the_next_link_keeps_the_filters_and_can_be_followed(self, app, client, trail, root_headers):
        since = (records(app)[0].at - timedelta(seconds=1)).isoformat()
        query = {"since": since, "action": "admin.grant", "per_page": 1}
        first = client.get("/admin/audit", query_string=query, headers=root_headers)
        next_link = next(part for part in first.headers["Link"].split(", ") if part.endswith('rel="next"'))
        assert "action=admin.grant" in next_link and "since=" in next_link
        second = client.get(next_link[1 : next_link.index(">")], headers=root_headers)
        assert second.status_code == 200
        assert [r["id"] for r in first.json["records"] + second.json["records"]] == [trail[1], trail[0]]

    def test_pages_and_cursors(self, client, trail, root_headers):
        first = client.get("/admin/audit?per_page=2", headers=root_headers)
        assert [r["id"] for r in first.json["records"]] == [trail[4], trail[3]]
        assert first.headers["X-Total-Count"] == "5"
        assert 'rel="next"' in first.headers["Link"] and 'rel="last"' in first.headers["Link"]
        seen = [r["id"] for r in first.json["records"]]
        cursor = first.headers["X-Next-Cursor"]
        while cursor:
            page = client.get("/admin/audit", query_string={"per_page": 2, "cursor": cursor}, headers=root_headers)
            assert page.status_code == 200 and "X-Total-Count" not in page.headers
            seen += [r["id"] for r in page.json["records"]]
            cursor = page.headers.get("X-Next-Cursor")
        assert seen == trail[::-1]
        second = client.get("/admin/audit?per_page=2&page=2", headers=root_headers)
        assert [r["id"] for r in second.json["records"]] == [trail[2], trail[1]]

    def test_an_until_before_since_is_an_empty_range(self, client, trail, root_headers):
        query = "since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z"
        response = client.get(f"/admin/audit?{query}", headers=root_headers)
        assert response.status_code == 200 and response.json["records"] == []
        assert response.headers["X-Total-Count"] == "0"

    @pytest.mark.parametrize(
        "query",
        [
            "action=admin.nothing",
            "since=0.5",
            "since=2026-01-01",
            "since=2026-01-01T00:00:00",  # no offset: ambiguous
            "cursor=abc.def",
            "per_page=0",
            "page=101",
            "actor=",
            "colour=red",
        ],
    )
    def test_bad_filters_are_422(self, client, trail, root_headers, query):
        response = client.get(f"/admin/audit?{query}", headers=root_headers)
        assert response.status_code == 422 and response.json["code"] == "validation_error"

    def test_a_products_cursor_is_not_an_audit_cursor(self, app, client, trail, root_headers):
        with app.app_context():
            for n in range(3):
                make_product("auth0|alice", name=f"P{n}")
        cursor = client.get("/products?per_page=1").headers["X-Next-Cursor"]
        response = client.get("/admin/audit", query_string={"cursor": cursor}, headers=root_headers)
        assert response.status_code == 422

    def test_non_admins_get_403_and_strangers_401(self, client, trail, issuer):
        assert client.get("/admin/audit").status_code == 401
        carol = bearer(issuer.token("auth0|carol", email="carol@example.com"))
        refused = client.get("/admin/audit", headers=carol)
        assert refused.status_code == 403 and refused.json["code"] == "forbidden"

    def test_me_audit_lists_what_was_done_to_my_account_and_products(self, app, client, trail, issuer, alice):
        response = client.get("/me/audit", headers=alice)
        assert response.status_code == 200 and response.headers["X-Total-Count"] == "2"
        rows = response.json["records"]
        assert [(r["action"], r["target_id"]) for r in rows] == [
            ("product.update", str(trail_product(app))),
            ("admin.grant", "auth0|alice"),
        ]
        assert "client_address" not in rows[0] and "actor_email" not in rows[0]
        assert rows[0]["actor_id"] == "auth0|root" and rows[0]["changes"]["quantity"] == [3, 7]
        only = client.get("/me/audit?action=admin.grant", headers=alice)
        assert [r["action"] for r in only.json["records"]] == ["admin.grant"]
        assert client.get("/me/audit?actor=auth0%7Croot", headers=alice).status_code == 422
        carol = bearer(issuer.token("auth0|carol", email="carol@example.com"))
        assert client.get("/me/audit", headers=carol).json["records"] == []
        assert client.get("/me/audit").status_code == 401


def trail_product(app) -> int:
    with app.app_context():
        return db.session.scalar(db.select(Product.id).where(Product.name == "Lamp"))


class TestLogAndMetrics:
    def test_one_json_log_line_per_record_with_the_request_id(self, make_app, capsys, issuer):
        app = make_app(LOG_FORMAT="json", LOG_LEVEL="INFO", METRICS_ENABLED="true")
        client = app.test_client()
        with app.app_context():
            make_user("auth0|root", email="root@example.com", is_admin=True)
            make_user("auth0|bob", email="bob@example.com")
        root = bearer(issuer.token("auth0|root", email="root@example.com"))
        capsys.readouterr()
        headers = {**root, "X-Request-ID": "req-audit-42"}
        assert client.post("/admin/set", json={"user_id": "auth0|bob"}, headers=headers).status_code == 200
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
        [entry] = [line for line in lines if line["logger"] == "app.audit"]
        assert entry["request_id"] == "req-audit-42"
        assert entry["audit"]["action"] == "admin.grant" and entry["audit"]["target_id"] == "auth0|bob"
        assert entry["audit"]["actor_id"] == "auth0|root" and entry["audit"]["request_id"] == "req-audit-42"
        assert entry["audit"]["changes"]["is_admin"] == [False, True]
        [record] = records(app)
        assert entry["audit"]["id"] == record.id and entry["audit"]["at"] == record.at.isoformat()
        scraped = client.get("/metrics").get_data(as_text=True)
        assert 'dmarket_audit_records_total{action="admin.grant",outcome="done"}' in scraped
