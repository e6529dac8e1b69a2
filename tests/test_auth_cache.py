"""The token cache: a verified token skips the RSA check and the user sync, never a change of rights."""

import pytest

from app.auth.cache import TokenCache
from app.extensions import db
from app.models import Product, User
from app.services.users import Identity
from tests.factories import bearer, make_product, make_user


@pytest.fixture
def verifications(app, monkeypatch):
    """How many tokens the app really verified (signature and claims)."""
    verifier = app.extensions["dmarket.auth"]["verifier"]
    calls = []
    real = verifier.verify

    def counting(token):
        calls.append(token)
        return real(token)

    monkeypatch.setattr(verifier, "verify", counting)
    return calls


def test_a_token_is_verified_once_then_remembered(client, user_headers, verifications):
    for _ in range(3):
        response = client.get("/me", headers=user_headers)
        assert response.status_code == 200
        assert response.json["user_id"] == "auth0|alice"
    assert len(verifications) == 1


def test_a_signature_on_other_claims_is_not_taken_from_the_cache(client, issuer, user_headers, verifications):
    assert client.get("/me", headers=user_headers).status_code == 200
    token = user_headers["Authorization"].removeprefix("Bearer ")
    other = issuer.token("auth0|mallory", email="mallory@example.com")
    forged = ".".join([*other.split(".")[:2], token.split(".")[2]])  # mallory's claims, alice's signature
    response = client.get("/me", headers=bearer(forged))
    assert response.status_code == 401
    assert response.json["code"] == "invalid_token"
    assert len(verifications) == 2


def test_revoking_admin_takes_effect_on_the_next_request(app, client, issuer):
    with app.app_context():
        make_user("auth0|root", email="root@example.com", is_admin=True)
        make_user("auth0|bob", email="bob@example.com", is_admin=True)
    root = bearer(issuer.token("auth0|root", email="root@example.com"))
    bob = bearer(issuer.token("auth0|bob", email="bob@example.com"))
    assert client.get("/admin/check", headers=bob).json == {"is_admin": True}  # bob's token is now cached
    assert client.post("/admin/unset", json={"user_id": "auth0|bob"}, headers=root).status_code == 200
    assert client.get("/admin/check", headers=bob).json == {"is_admin": False}
    assert client.get("/admin/users", headers=bob).status_code == 403
    with app.app_context():
        assert db.session.get(User, "auth0|bob").is_admin is False


def _as_another_worker(app, user_id: str, **values) -> None:
    """A change made by another worker or host: a plain UPDATE, which this process's ORM events never see."""
    with app.app_context():
        db.session.execute(db.update(User).where(User.user_id == user_id).values(**values))
        db.session.commit()


def test_an_admin_revoked_elsewhere_cannot_use_admin_rights_even_once(app, client, issuer):
    """An attacker's view: a revoked admin hammering a worker that saw them as admin moments ago
    must not grant admin back to themselves, nor edit another user's product."""
    with app.app_context():
        make_user("auth0|root", email="root@example.com", is_admin=True)
        make_user("auth0|mallory", email="mallory@example.com", is_admin=True)
        product_id = make_product("auth0|root", quantity=3).id
    mallory = bearer(issuer.token("auth0|mallory", email="mallory@example.com"))
    assert client.get("/admin/users", headers=mallory).status_code == 200
    _as_another_worker(app, "auth0|mallory", is_admin=False)

    regrant = client.post("/admin/set", json={"user_id": "auth0|mallory"}, headers=mallory)
    edit = client.put(f"/products/{product_id}/update", json={"quantity": 0}, headers=mallory)
    assert (regrant.status_code, edit.status_code) == (403, 403)
    with app.app_context():
        assert db.session.get(User, "auth0|mallory").is_admin is False
        assert db.session.get(Product, product_id).quantity == 3


def test_admin_granted_elsewhere_counts_at_once(app, client, user_headers):
    assert client.get("/me", headers=user_headers).json["is_admin"] is False  # alice is remembered as a user
    _as_another_worker(app, "auth0|alice", is_admin=True)
    response = client.get("/admin/users", headers=user_headers)
    assert response.status_code == 200
    assert {user["user_id"]: user["is_admin"] for user in response.json["users"]} == {"auth0|alice": True}


def test_a_deleted_user_is_refused_at_once_not_served_from_the_cache(app, client, issuer, user_headers):
    with app.app_context():
        make_user("auth0|root", email="root@example.com", is_admin=True)
    root = bearer(issuer.token("auth0|root", email="root@example.com"))
    assert client.get("/me", headers=user_headers).status_code == 200  # alice's identity is now cached
    assert client.delete("/users/auth0%7Calice", headers=root).status_code == 200
    lamp = {"name": "Lamp", "price": "2", "quantity": 1}
    refused = client.post("/products/create", json=lamp, headers=user_headers)
    assert refused.status_code == 403 and refused.json["code"] == "account_disabled"
    with app.app_context():
        assert db.session.get(User, "auth0|alice").disabled_at is not None
        assert db.session.query(Product).count() == 0


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


def identity(user_id="auth0|alice"):
    return Identity(user=User(user_id=user_id, email="a@example.com", is_admin=False), is_admin=False, claims={})


class TestTokenCache:
    def test_claims_last_until_the_token_expires(self):
        clock = Clock()
        cache = TokenCache(size=10, identity_seconds=30, clock=clock)
        cache.remember("t", {"sub": "auth0|alice", "exp": clock.now + 100}, identity())
        clock.now += 99
        assert cache.claims("t")["sub"] == "auth0|alice"
        clock.now += 1
        assert cache.claims("t") is None and cache.identity("t") is None

    def test_the_identity_is_read_again_after_identity_seconds(self):
        clock = Clock()
        cache = TokenCache(size=10, identity_seconds=30, clock=clock)
        cache.remember("t", {"sub": "auth0|alice", "exp": clock.now + 3600}, identity())
        assert cache.identity("t").user.user_id == "auth0|alice"
        clock.now += 30
        assert cache.identity("t") is None
        assert cache.claims("t") is not None  # the signature need not be checked again

    def test_the_least_recently_used_token_goes_first(self):
        clock = Clock()
        cache = TokenCache(size=2, identity_seconds=30, clock=clock)
        for token in ("a", "b"):
            cache.remember(token, {"exp": clock.now + 60}, identity())
        cache.claims("a")
        cache.remember("c", {"exp": clock.now + 60}, identity())
        assert [cache.claims(t) is not None for t in ("a", "b", "c")] == [True, False, True]

    def test_a_key_set_losing_a_key_sends_every_token_back_to_verification(self):
        """A revocation may have removed the key a remembered token was signed with."""
        keys = type("Keys", (), {"generation": 1, "usable_generation": lambda self: self.generation})()
        cache = TokenCache(size=10, identity_seconds=30, keys=keys)
        cache.remember("t", {"exp": 10**12}, identity())
        assert cache.claims("t") is not None
        keys.generation = 2
        assert cache.claims("t") is None and cache.identity("t") is None

    def test_a_token_verified_against_an_earlier_key_set_is_not_remembered_as_current(self):
        keys = type("Keys", (), {"generation": 2, "usable_generation": lambda self: self.generation})()
        cache = TokenCache(size=10, identity_seconds=30, keys=keys)
        cache.remember("t", {"exp": 10**12}, identity(), key_set=1)  # a key left the set during verification
        assert cache.claims("t") is None

    def test_nothing_is_served_or_remembered_while_no_key_set_may_accept_tokens(self):
        """A set past its age (and its stale-if-error window) accepts nothing, from the cache either."""
        keys = type("Keys", (), {"generation": 1, "usable_generation": lambda self: self.generation})()
        cache = TokenCache(size=10, identity_seconds=30, keys=keys)
        cache.remember("t", {"exp": 10**12}, identity())
        keys.generation = None  # no usable set: the issuer does not answer and the old set is too old
        assert cache.claims("t") is None and cache.identity("t") is None
        cache.remember("u", {"exp": 10**12}, identity(), key_set=None)  # no set was usable before its check
        keys.generation = 1  # the issuer answered with the same keys
        assert cache.claims("t") is not None
        assert cache.claims("u") is None

    def test_size_zero_remembers_nothing(self):
        cache = TokenCache(size=0, identity_seconds=30)
        cache.remember("t", {"exp": 10**12}, identity())
        assert cache.claims("t") is None


def test_identity_cache_can_be_switched_off(make_app, user_headers, monkeypatch):
    app = make_app(IDENTITY_CACHE_SECONDS="0")
    client = app.test_client()
    assert client.get("/me", headers=user_headers).json["name"] == "Alice"
    with app.app_context():
        db.session.execute(db.update(User).where(User.user_id == "auth0|alice").values(is_admin=True))
        db.session.commit()
    assert client.get("/admin/check", headers=user_headers).json == {"is_admin": True}
