"""Bearer tokens: what the API accepts, what it refuses, and how it answers."""

import json
import logging
import threading
import time

import pytest

from app.auth.verifier import InvalidToken, IssuerUnavailable, JWKSCache
from app.extensions import db
from app.models import BrowserSession, Product, User
from tests.factories import bearer, make_user
from tests.issuer import ADMIN_CLAIM, AUDIENCE, LocalOIDCIssuer, new_key
from tests.live import free_port

NEW_PRODUCT = {"name": "Lamp", "price": 19.99, "quantity": 3}


def create(client, headers, body=NEW_PRODUCT):
    return client.post("/products/create", json=body, headers=headers)


def assert_rejected(response, fragment: str):
    assert response.status_code == 401
    assert response.json["code"] == "invalid_token"
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer error="invalid_token", error_description="')
    assert fragment in challenge
    assert fragment in response.json["message"]


def product_count(app) -> int:
    with app.app_context():
        return db.session.query(Product).count()


class TestAccepted:
    def test_auth0_default_profile_with_audience_list(self, client, issuer):
        token = issuer.token("auth0|alice", header={"typ": "JWT"})  # aud: [API, /userinfo]
        response = create(client, bearer(token))
        assert response.status_code == 201
        assert response.json["user_id"] == "auth0|alice"

    def test_rfc9068_profile(self, client, issuer):
        token = issuer.token(
            "auth0|alice", header={"typ": "at+jwt"}, aud=AUDIENCE, client_id="spa", jti="abc", azp=None, gty=None
        )
        assert create(client, bearer(token)).status_code == 201

    def test_expiry_within_leeway_is_accepted(self, client, issuer):
        token = issuer.token(exp=int(time.time()) - 10)
        assert create(client, bearer(token)).status_code == 201

    def test_rotated_key_is_fetched_for_an_unknown_kid(self, make_app, issuer):
        client = make_app(JWKS_MIN_REFRESH_SECONDS="1").test_client()
        next_key = new_key()
        assert create(client, bearer(issuer.token())).status_code == 201
        issuer.rotate(next_key)
        rotated = bearer(issuer.token())
        # Refetches are throttled: within the interval the new kid is still unknown.
        assert_rejected(create(client, rotated), "unknown key")
        time.sleep(1.1)
        assert create(client, rotated).status_code == 201
        assert issuer.jwks_requests == 2


class TestRejected:
    @pytest.mark.parametrize(
        "claims, fragment",
        [
            ({"exp": int(time.time()) - 120}, "expired"),
            ({"nbf": int(time.time()) + 600}, "not valid yet"),
            ({"aud": "https://another-api.example"}, "aud"),
            ({"aud": None}, "aud"),
            ({"iss": "https://evil.example/"}, "iss"),
            ({"sub": None}, "sub"),
            ({"sub": ""}, "sub"),
            ({"exp": None}, "exp"),
        ],
        ids=[
            "expired",
            "not-yet-valid",
            "wrong-audience",
            "no-audience",
            "wrong-issuer",
            "no-sub",
            "empty-sub",
            "no-exp",
        ],
    )
    def test_bad_claims(self, app, client, issuer, claims, fragment):
        response = create(client, bearer(issuer.token(**claims)))
        assert_rejected(response, fragment)
        assert product_count(app) == 0

    @pytest.mark.parametrize(
        "sub",
        ["auth0|" + "x" * 250, "auth0|a\x00b", "auth0|a\nb", "auth0|a\x7fb", "auth0|\ud800", "auth0|\udc00x"],
        ids=["256-characters", "nul", "newline", "del", "lone-high-surrogate", "lone-low-surrogate"],
    )
    def test_a_subject_that_cannot_be_an_account_key(self, app, client, issuer, sub):
        """Issue 11, item 11: a 401 on both databases, never a 500 (nor a truncated or cleaned account key)."""
        response = create(client, bearer(issuer.escaped_token(sub, email="x@example.com")))
        assert_rejected(response, "the token's sub claim is not accepted")
        with app.app_context():
            assert db.session.query(User).count() == 0

    def test_a_subject_of_255_characters_is_fine(self, client, issuer):
        sub = "auth0|" + "x" * 249
        assert create(client, bearer(issuer.token(sub))).json["user_id"] == sub

    def test_signed_by_another_key_under_a_published_kid(self, client, issuer):
        forged = issuer.token(key=new_key(), header={"kid": issuer.signing_key.kid})
        assert_rejected(create(client, bearer(forged)), "signature")

    def test_alg_none(self, client, issuer):
        assert_rejected(create(client, bearer(issuer.unsigned_token())), "algorithm is not allowed")

    def test_hs256_signed_with_the_public_key(self, client, issuer):
        assert_rejected(create(client, bearer(issuer.hs256_with_public_key())), "algorithm is not allowed")

    def test_id_token_is_not_an_access_token(self, client, issuer):
        assert_rejected(create(client, bearer(issuer.id_token())), "aud")

    def test_unexpected_token_type(self, client, issuer):
        token = issuer.token(header={"typ": "dpop+jwt"})
        assert_rejected(create(client, bearer(token)), "not an access token")

    def test_token_without_kid(self, client, issuer):
        token = issuer.token(header={"kid": None})
        assert_rejected(create(client, bearer(token)), "key id")

    @pytest.mark.parametrize("garbage", ["garbage", "a.b.c", "....", "e30.e30.e30", "x" * 20000])
    def test_garbage(self, client, garbage):
        response = create(client, bearer(garbage))
        assert response.status_code == 401
        assert response.json["code"] == "invalid_token"

    def test_keys_are_never_fetched_from_the_token(self, client, issuer):
        attacker = LocalOIDCIssuer().start()
        try:
            token = attacker.token(header={"jku": f"{attacker.url}.well-known/jwks.json", "x5u": attacker.url})
            assert_rejected(create(client, bearer(token)), "unknown key")
            assert attacker.jwks_requests == 0
        finally:
            attacker.stop()

    def test_forged_kids_do_not_hammer_the_issuer(self, client, issuer):
        assert create(client, bearer(issuer.token())).status_code == 201
        for _ in range(5):
            forged = issuer.token(key=new_key())
            assert_rejected(create(client, bearer(forged)), "unknown key")
        assert issuer.jwks_requests == 1


class TestChallenges:
    def test_missing_header(self, app, client, issuer):
        response = create(client, {})
        assert response.status_code == 401
        how = (
            "sign in at http://localhost:5000/login, "
            f"or send an access token from {issuer.url} with the audience {AUDIENCE}"
        )
        assert response.json == {
            "code": "unauthorized",
            "message": f"Authentication is required: send Authorization: Bearer <access token>, or {how}.",
        }
        assert response.headers["WWW-Authenticate"] == f'Bearer error_description="Authentication is required: {how}"'
        assert product_count(app) == 0

    @pytest.mark.parametrize("value", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "Token abc"])
    def test_not_a_bearer_credential(self, client, value):
        response = create(client, {"Authorization": value})
        assert response.status_code == 401
        challenge = response.headers["WWW-Authenticate"]
        assert challenge.startswith('Bearer error_description="Send Authorization: Bearer <access token>; to get one')
        assert "sign in at http://localhost:5000/login" in challenge
        assert "to get one, sign in at http://localhost:5000/login" in response.json["message"]

    def test_an_expired_token_says_to_sign_in_again(self, client, issuer):
        response = create(client, bearer(issuer.token(exp=int(time.time()) - 120)))
        assert response.status_code == 401
        how = f"sign in again at http://localhost:5000/login, or send an access token from {issuer.url}"
        assert response.json["message"].startswith(
            f"The access token was rejected: the token has expired. To get a valid one, {how}"
        )
        assert response.headers["WWW-Authenticate"].startswith(
            f'Bearer error="invalid_token", error_description="the token has expired; {how}'
        )

    def test_another_rejection_says_how_to_get_one(self, client, issuer):
        response = create(client, bearer(issuer.token(aud="https://another-api.example")))
        assert "To get a valid one, sign in at http://localhost:5000/login" in response.json["message"]
        assert "again" not in response.json["message"]

    def test_the_sign_in_address_follows_public_url(self, make_app):
        client = make_app(PUBLIC_URL="https://api.example.com/").test_client()
        response = create(client, {})
        assert "sign in at https://api.example.com/login," in response.json["message"]
        assert "sign in at https://api.example.com/login," in response.headers["WWW-Authenticate"]


class TestChallengesInLocalMode:
    """AUTH_MODE=local: the sign-in page and `flask auth token`, on the server's own address."""

    HOW = (
        "sign in at http://localhost:8350/login (the link the server logs carries its sign-in code), "
        "or run `flask auth token EMAIL` for a bearer token"
    )

    @pytest.fixture
    def local(self, make_app):
        return make_app(AUTH_MODE="local", AUTH0_ISSUER="", API_AUDIENCE="", PORT="8350")

    def test_missing_credentials(self, local):
        response = create(local.test_client(), {})
        assert response.json["message"] == (
            f"Authentication is required: send Authorization: Bearer <access token>, or {self.HOW}."
        )
        assert (
            response.headers["WWW-Authenticate"] == f'Bearer error_description="Authentication is required: {self.HOW}"'
        )

    def test_an_expired_token(self, local):
        token = local.extensions["dmarket.auth"]["local_issuer"].mint(email="dev@example.com", ttl=-120)
        response = create(local.test_client(), bearer(token))
        again = self.HOW.replace("sign in at", "sign in again at")
        assert response.json == {
            "code": "invalid_token",
            "message": f"The access token was rejected: the token has expired. To get a valid one, {again}.",
        }
        assert response.headers["WWW-Authenticate"] == (
            f'Bearer error="invalid_token", error_description="the token has expired; {again}"'
        )

    def test_an_ended_session(self, local):
        client = local.test_client()
        code = local.config["LOCAL_SIGNIN_CODE"]
        client.post("/login", data={"email": "dev@example.com", "code": code}, headers={"Origin": "http://localhost"})
        with local.app_context():
            row = db.session.query(BrowserSession).one()
            row.access_token = local.extensions["dmarket.auth"]["local_issuer"].mint(email="dev@example.com", ttl=-120)
            db.session.commit()
        response = client.get("/me")
        again = self.HOW.replace("sign in at", "sign in again at")
        assert response.status_code == 401 and response.json == {
            "code": "session_expired",
            "message": f"Your session has ended; {again}.",
        }
        assert response.headers["WWW-Authenticate"] == f'Bearer error_description="The session has ended; {again}"'

    def test_the_other_loopback_name_is_named_as_the_cause(self, local):
        response = local.test_client().get("/me", base_url="http://127.0.0.1:8350")
        assert response.status_code == 401
        assert response.json["message"].endswith(
            " This request went to 127.0.0.1:8350, but browser sign-in cookies are kept per host name and "
            "this API's address is http://localhost:8350: use that one."
        )
        on_the_address = local.test_client().get("/me", base_url="http://localhost:8350")
        assert "kept per host name" not in on_the_address.json["message"]

    def test_authentication_comes_before_body_validation(self, client):
        response = client.post("/products/create", json={"name": "", "price": "free"})
        assert response.status_code == 401

    def test_authentication_comes_before_content_type_checks(self, client):
        response = client.post("/products/create", data="name=x")
        assert response.status_code == 401

    def test_cors_preflight_needs_no_token(self, client):
        response = client.options(
            "/products/create",
            headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST"},
        )
        assert response.status_code == 200
        assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"


class TestIssuerOutage:
    def test_issuer_unreachable_is_503_not_500(self, make_app, issuer):
        client = make_app(AUTH0_ISSUER=f"http://127.0.0.1:{free_port()}/").test_client()
        started = time.monotonic()
        response = create(client, bearer(issuer.token()))
        assert response.status_code == 503
        assert response.json["code"] == "issuer_unavailable"
        assert response.headers["Retry-After"] == "5"
        assert time.monotonic() - started < 5

    def test_issuer_error_then_recovery(self, make_app, issuer, monkeypatch):
        client = make_app().test_client()
        issuer.mode = "error"
        assert create(client, bearer(issuer.token())).status_code == 503
        issuer.mode = "up"
        # The failure backoff keeps us off the issuer briefly; once it passes, keys load.
        monkeypatch.setattr("app.auth.verifier.FAILURE_BACKOFF_SECONDS", 0)
        assert create(client, bearer(issuer.token())).status_code == 201

    def test_cached_keys_keep_working_while_the_issuer_is_down(self, client, issuer):
        assert create(client, bearer(issuer.token())).status_code == 201
        issuer.mode = "error"
        assert create(client, bearer(issuer.token())).status_code == 201

    def test_a_hanging_refetch_never_delays_tokens_whose_key_is_cached(self, make_app, issuer):
        app = make_app(JWKS_MIN_REFRESH_SECONDS="0")
        valid, forged = bearer(issuer.token()), bearer(issuer.token(key=new_key()))
        assert app.test_client().get("/me", headers=valid).status_code == 200  # keys cached
        issuer.mode, issuer.delay = "slow", 1.5
        unknown = {}
        refetch = threading.Thread(target=lambda: unknown.update(response=app.test_client().get("/me", headers=forged)))
        refetch.start()
        time.sleep(0.2)  # the unknown kid's refetch is now waiting on the issuer
        timings = []
        for _ in range(4):
            started = time.monotonic()
            assert app.test_client().get("/me", headers=valid).status_code == 200
            timings.append(time.monotonic() - started)
        assert refetch.is_alive()  # the valid ones were all answered during the refetch
        refetch.join()
        assert max(timings) < 0.5
        assert_rejected(unknown["response"], "unknown key")

    def test_requests_queued_behind_a_failed_refetch_fail_fast(self, make_app, issuer):
        app = make_app(JWKS_MIN_REFRESH_SECONDS="0")
        assert app.test_client().get("/me", headers=bearer(issuer.token())).status_code == 200
        issuer.mode, issuer.delay = "slow", 3  # longer than HTTP_TIMEOUT=2: the refetch fails
        results = []

        def unknown_kid(headers):
            started = time.monotonic()
            response = app.test_client().get("/me", headers=headers)
            results.append((response.status_code, time.monotonic() - started))

        forged = [bearer(issuer.token(key=new_key())) for _ in range(3)]
        threads = [threading.Thread(target=unknown_kid, args=(headers,)) for headers in forged]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # One waited for the issuer; the others waited for that one attempt, never for one of their own.
        assert sorted(status for status, _ in results) == [503, 503, 503]
        assert max(elapsed for _, elapsed in results) < 3.5


class TestKeySetAge:
    """A key set older than JWKS_MAX_AGE_SECONDS never accepts a token while the issuer answers.

    Each test has an issuer of its own: a slow request another test left behind cannot count here.
    """

    @pytest.fixture
    def issuer(self):
        own = LocalOIDCIssuer().start()
        yield own
        own.stop()

    @staticmethod
    def settle(app) -> None:
        """Wait for the background fetch a request may have started."""
        fetch = app.extensions["dmarket.auth"]["verifier"].keys.background
        if fetch is not None:
            fetch.join(10)

    def test_an_idle_workers_first_request_after_max_age_is_checked_against_the_issuers_keys(self, make_app, issuer):
        app = make_app(JWKS_MAX_AGE_SECONDS="1", AUTH0_ISSUER=issuer.url)
        client = app.test_client()
        old = bearer(issuer.token())
        assert client.get("/me", headers=old).status_code == 200  # verified, and remembered by the token cache
        issuer.rotate(keep_old=False)  # the old key is revoked
        assert client.get("/me", headers=old).status_code == 200  # the set is younger than its max age
        time.sleep(1.05)

        assert_rejected(client.get("/me", headers=old), "unknown key")  # the first request: refetched, then refused
        assert client.get("/me", headers=bearer(issuer.token())).status_code == 200
        assert issuer.jwks_requests == 2

    def test_a_refresh_with_the_same_keys_keeps_remembered_tokens(self, make_app, issuer):
        app = make_app(JWKS_MAX_AGE_SECONDS="1", AUTH0_ISSUER=issuer.url)
        verifier = app.extensions["dmarket.auth"]["verifier"]
        client = app.test_client()
        headers = bearer(issuer.token())
        assert client.get("/me", headers=headers).status_code == 200
        issuer.rotate()  # a key added: nothing that was trusted stops being trusted
        time.sleep(1.05)
        assert client.get("/me", headers=headers).status_code == 200
        self.settle(app)
        assert issuer.jwks_requests == 2
        verified = []
        real = verifier.verify
        verifier.verify = lambda token: verified.append(token) or real(token)
        assert client.get("/me", headers=headers).status_code == 200
        assert verified == []  # still answered from the token cache

    def test_under_traffic_the_set_is_refreshed_ahead_of_its_age_and_no_request_waits(self, make_app, issuer):
        # JWKS_MAX_AGE_SECONDS=2, HTTP_TIMEOUT=2: refreshed in the background from an age of 1 s.
        app = make_app(JWKS_MAX_AGE_SECONDS="2", AUTH0_ISSUER=issuer.url)
        client = app.test_client()
        headers = bearer(issuer.token())
        assert client.get("/me", headers=headers).status_code == 200
        issuer.mode, issuer.delay = "slow", 0.6  # every refresh takes 0.6 s: a request waiting on one would show
        timings = []
        until = time.monotonic() + 4.5
        while time.monotonic() < until:
            started = time.monotonic()
            assert client.get("/me", headers=headers).status_code == 200
            timings.append(time.monotonic() - started)
            time.sleep(0.05)
        assert max(timings) < 0.5, f"a request waited {max(timings):.2f} s for a refresh"
        assert issuer.jwks_requests >= 3  # refreshed at least twice while the requests went on

    def test_an_idle_worker_waits_for_a_hanging_issuer_one_timeout_at_most(self, make_app, issuer):
        """Then the old set serves (stale-if-error), and the next requests do not wait at all."""
        app = make_app(JWKS_MAX_AGE_SECONDS="1", AUTH0_ISSUER=issuer.url)
        client = app.test_client()
        headers = bearer(issuer.token())
        assert client.get("/me", headers=headers).status_code == 200
        issuer.mode, issuer.delay = "slow", 4  # accepts and answers after HTTP_TIMEOUT (2 s)
        time.sleep(1.05)
        timings = []
        for _ in range(3):
            started = time.monotonic()
            assert client.get("/me", headers=headers).status_code == 200
            timings.append(time.monotonic() - started)
        assert 1.9 < timings[0] < 2.6, timings  # one HTTP_TIMEOUT
        assert max(timings[1:]) < 0.5, timings
        ready = client.get("/health/ready")
        assert ready.status_code == 200
        assert ready.json["checks"]["identity_provider"] == "unreachable"
        # Whichever gave up last: this request's wait, or the fetch's own read timeout (both 2 s).
        assert ready.json["detail"] in (
            "the issuer did not answer within HTTP_TIMEOUT (2 s)",
            "ReadTimeout fetching keys",
        )

    def test_the_old_set_keeps_serving_while_the_issuer_is_down(self, make_app, issuer):
        app = make_app(JWKS_MAX_AGE_SECONDS="1", AUTH0_ISSUER=issuer.url)
        client = app.test_client()
        headers = bearer(issuer.token())
        assert client.get("/me", headers=headers).status_code == 200
        issuer.mode = "garbage"  # answers, but no key set: counted, unlike "error"
        time.sleep(1.05)
        for _ in range(3):
            assert client.get("/me", headers=bearer(issuer.token())).status_code == 200
            self.settle(app)
        assert issuer.jwks_requests == 2  # a failed refresh is retried after FAILURE_BACKOFF_SECONDS, not per call
        ready = client.get("/health/ready")
        assert ready.status_code == 200
        assert ready.json["checks"]["identity_provider"] == "unreachable"

    def test_past_the_stale_if_error_window_every_token_gets_503(self, make_app, issuer, monkeypatch):
        app = make_app(JWKS_MAX_AGE_SECONDS="1", JWKS_STALE_IF_ERROR_SECONDS="1", AUTH0_ISSUER=issuer.url)
        client = app.test_client()
        remembered = bearer(issuer.token())
        assert client.get("/me", headers=remembered).status_code == 200
        issuer.mode = "error"
        time.sleep(1.05)
        assert client.get("/me", headers=remembered).status_code == 200  # within the window
        time.sleep(1)  # the set is now older than JWKS_MAX_AGE_SECONDS + JWKS_STALE_IF_ERROR_SECONDS
        for headers in (remembered, bearer(issuer.token("auth0|bob"))):
            response = client.get("/me", headers=headers)
            assert response.status_code == 503
            assert response.json["code"] == "issuer_unavailable"
            assert response.headers["Retry-After"] == "5"
        issuer.mode = "up"
        monkeypatch.setattr("app.auth.verifier.FAILURE_BACKOFF_SECONDS", 0)
        assert client.get("/me", headers=remembered).status_code == 200

    def test_a_stale_if_error_window_of_zero_refuses_at_max_age(self, make_app, issuer):
        app = make_app(JWKS_MAX_AGE_SECONDS="1", JWKS_STALE_IF_ERROR_SECONDS="0", AUTH0_ISSUER=issuer.url)
        client = app.test_client()
        headers = bearer(issuer.token())
        assert client.get("/me", headers=headers).status_code == 200
        issuer.mode = "error"
        time.sleep(1.05)
        response = client.get("/me", headers=headers)
        assert response.status_code == 503 and response.json["code"] == "issuer_unavailable"

    def test_a_token_accepted_while_a_refresh_loads_is_not_remembered_past_it(self, make_app, issuer):
        """The refresh is held after the fetch, before the new keys are in place (where it logs them).

        A request then is checked against the old set, and remembered under its generation: once
        the new set is in place, tokens of the removed key are refused, remembered or not.
        """
        app = make_app(JWKS_MAX_AGE_SECONDS="4", AUTH0_ISSUER=issuer.url)  # refreshed ahead from 2 s
        client = app.test_client()
        old_key = issuer.signing_key
        remembered = bearer(issuer.token())
        assert client.get("/me", headers=remembered).status_code == 200
        issuer.rotate(keep_old=False)  # the old key is revoked
        paused, release = threading.Event(), threading.Event()

        class HoldTheLoad(logging.Handler):
            def emit(self, record):
                if record.getMessage().startswith("loaded"):
                    paused.set()
                    release.wait(10)

        verifier_log = logging.getLogger("app.auth.verifier")
        hold, level = HoldTheLoad(), verifier_log.level
        verifier_log.addHandler(hold)
        verifier_log.setLevel(logging.INFO)
        try:
            time.sleep(2.05)
            assert client.get("/me", headers=remembered).status_code == 200  # starts the refresh ahead
            assert paused.wait(5)
            during = bearer(issuer.token("auth0|bob", key=old_key))  # not seen before: verified now
            assert client.get("/me", headers=during).status_code == 200  # the old set is still in force
            assert client.get("/me", headers=remembered).status_code == 200
        finally:
            release.set()
            verifier_log.removeHandler(hold)
            verifier_log.setLevel(level)
        self.settle(app)
        for headers in (during, remembered):
            assert_rejected(client.get("/me", headers=headers), "unknown key")
        assert client.get("/me", headers=bearer(issuer.token())).status_code == 200


class FakeClock:
    def __init__(self):
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class TestKeySetBounds:
    """The documented bounds on a fake clock, to the second (JWKS_MAX_AGE_SECONDS 300, stale-if-error 600)."""

    @pytest.fixture
    def provider(self):
        """A key source: `published` keys, `answers` or not; each fetch takes `takes` seconds of the clock."""
        clock = FakeClock()
        state = {"published": [new_key()], "answers": True, "takes": 0.0}

        def fetch() -> dict:
            clock.now += state["takes"]
            if not state["answers"]:
                raise IssuerUnavailable("ConnectionError fetching keys")
            return {"keys": [key.as_dict(private=False) for key in state["published"]]}

        keys = JWKSCache(fetch, min_refresh=30, max_age=300, stale_if_error=600, timeout=5, clock=clock)
        return keys, clock, state

    @staticmethod
    def settle(keys) -> None:
        if keys.background is not None:
            keys.background.join(5)

    def test_an_idle_set_at_its_age_is_refetched_before_it_accepts(self, provider):
        keys, clock, state = provider
        old = state["published"][0]
        assert keys.key_for(old.kid) is not None
        first_fetch = keys.background
        state["published"] = [new_key()]  # revoked
        clock.now += 294
        assert keys.key_for(old.kid) is not None  # younger than its age less HTTP_TIMEOUT: no refresh yet
        assert keys.background is first_fetch
        clock.now += 6  # no request meanwhile
        with pytest.raises(InvalidToken):  # refetched, then checked against what the issuer publishes now
            keys.key_for(old.kid)

    def test_the_age_counts_from_the_start_of_the_fetch(self, provider):
        keys, clock, state = provider
        old = state["published"][0]
        state["takes"] = 2.0
        assert keys.key_for(old.kid) is not None  # fetched from 1000 to 1002
        state["published"], state["takes"] = [new_key()], 0.0
        clock.now = 1_000 + 300
        with pytest.raises(InvalidToken):  # 298 s after the fetch ended, but 300 after it began
            keys.key_for(old.kid)

    def test_stale_if_error_serves_until_max_age_plus_the_window_then_refuses(self, provider):
        keys, clock, state = provider
        old = state["published"][0]
        assert keys.key_for(old.kid) is not None
        state["answers"] = False
        clock.now += 300
        assert keys.key_for(old.kid) is not None  # the refetch failed: the old set serves, without waiting again
        clock.now += 599.5
        assert keys.key_for(old.kid) is not None
        self.settle(keys)
        clock.now += 0.5
        with pytest.raises(IssuerUnavailable):
            keys.key_for(old.kid)
        assert keys.usable_generation() is None  # the token cache serves nothing either
        state["answers"], state["published"] = True, [new_key()]
        clock.now += 5  # FAILURE_BACKOFF_SECONDS
        with pytest.raises(InvalidToken):
            keys.key_for(old.kid)

    def test_a_hanging_fetch_costs_a_request_one_timeout_at_most(self):
        """The token cache and the verifier both ask for the set: only the first waits on the hanging fetch."""
        clock, release, key = FakeClock(), threading.Event(), new_key()
        fetches = []

        def fetch() -> dict:
            if fetches:
                release.wait(10)  # every fetch after the first hangs
            fetches.append(clock.now)
            return {"keys": [key.as_dict(private=False)]}

        keys = JWKSCache(fetch, max_age=300, stale_if_error=0, timeout=0.5, clock=clock)
        assert keys.key_for(key.kid) is not None
        clock.now += 300
        started = time.monotonic()
        try:
            assert keys.usable_generation() is None  # waited 0.5 s for the refetch, in vain
            with pytest.raises(IssuerUnavailable):
                keys.key_for(key.kid)
            waited = time.monotonic() - started
        finally:
            release.set()
        assert 0.5 <= waited < 0.9

    def test_a_worker_started_while_the_issuer_is_down_takes_the_set_another_worker_saved(self, tmp_path):
        """A recycled worker starts empty: the set on disk serves it as stale-if-error would the old worker."""
        clock, key, saved = FakeClock(), new_key(), tmp_path / "signing-keys.json"
        answers = {"up": True}

        def fetch() -> dict:
            if not answers["up"]:
                raise IssuerUnavailable("ConnectionError fetching keys")
            return {"keys": [key.as_dict(private=False)]}

        def worker() -> JWKSCache:
            return JWKSCache(fetch, max_age=300, stale_if_error=600, timeout=1, clock=clock, saved_at=saved)

        def saved_ago(seconds: float) -> None:  # the file says when, in wall time: age it there
            record = json.loads(saved.read_text())
            saved.write_text(json.dumps({**record, "fetched_at": time.time() - seconds}))

        assert worker().key_for(key.kid) is not None  # a worker fetched, and saved what it got
        assert json.loads(saved.read_text())["jwks"]["keys"][0]["kid"] == key.kid
        answers["up"] = False
        saved_ago(400)
        recycled = worker()
        assert recycled.key_for(key.kid) is not None  # 400 s old: within 300 + 600
        assert recycled.reachable is False
        saved_ago(901)
        with pytest.raises(IssuerUnavailable):  # past the window, as any worker would be
            worker().key_for(key.kid)

    def test_a_set_saved_on_disk_is_never_taken_while_the_issuer_answers(self, tmp_path):
        clock, saved = FakeClock(), tmp_path / "signing-keys.json"
        revoked, current = new_key(), new_key()
        saved.write_text(json.dumps({"fetched_at": time.time(), "jwks": {"keys": [revoked.as_dict(private=False)]}}))
        keys = JWKSCache(lambda: {"keys": [current.as_dict(private=False)]}, clock=clock, saved_at=saved)
        with pytest.raises(InvalidToken):
            keys.key_for(revoked.kid)
        assert keys.key_for(current.kid) is not None


class TestClockSkew:
    """JWT_LEEWAY applies to exp, nbf and iat alike; the message says which one and why."""

    def test_a_token_issued_ahead_of_our_clock_beyond_the_leeway(self, client, issuer):
        response = client.get("/me", headers=bearer(issuer.token(iat=int(time.time()) + 45)))
        assert_rejected(response, "not valid yet: its iat is ahead of this server's clock beyond JWT_LEEWAY")

    @pytest.mark.parametrize("claim", ["iat", "nbf"])
    def test_a_time_that_is_not_a_number_is_not_called_a_clock_problem(self, client, issuer, claim):
        response = client.get("/me", headers=bearer(issuer.token(**{claim: "soon"})))
        assert_rejected(response, f"the token's {claim} claim is not accepted")

    def test_within_the_leeway_it_is_accepted(self, make_app, issuer):
        client = make_app(JWT_LEEWAY="60").test_client()
        headers = bearer(issuer.token(iat=int(time.time()) + 45, nbf=int(time.time()) + 45))
        assert client.get("/me", headers=headers).status_code == 200


class TestUsers:
    def test_first_sight_creates_the_user(self, app, client, issuer):
        token = issuer.token("auth0|carol", email="carol@example.com", name="Carol")
        assert create(client, bearer(token)).status_code == 201
        with app.app_context():
            user = db.session.get(User, "auth0|carol")
            assert (user.email, user.name, user.is_admin) == ("carol@example.com", "Carol", False)

    def test_later_tokens_refresh_email_and_name(self, app, client, issuer):
        create(client, bearer(issuer.token("auth0|carol", email="old@example.com", name="Old")))
        create(client, bearer(issuer.token("auth0|carol", email="new@example.com", name="New")))
        create(client, bearer(issuer.token("auth0|carol")))  # no profile claims: keep what we know
        with app.app_context():
            user = db.session.get(User, "auth0|carol")
            assert (user.email, user.name) == ("new@example.com", "New")
            assert db.session.query(User).count() == 1

    @pytest.mark.parametrize(
        "claim, is_admin",
        [
            (True, True),
            ({"is_admin": True}, True),
            (["admin"], True),
            ({}, False),
            ({"is_admin": "true"}, False),
            (["user"], False),
            (False, False),
            ("admin", False),
        ],
    )
    def test_admin_claim(self, app, client, issuer, claim, is_admin):
        with app.app_context():
            product_id = _someone_elses_product()
        token = issuer.token("auth0|carol", **{ADMIN_CLAIM: claim})
        response = client.delete(f"/products/{product_id}/delete", headers=bearer(token))
        assert response.status_code == (200 if is_admin else 403)
        with app.app_context():
            assert (db.session.get(Product, product_id) is None) is is_admin
            assert db.session.get(User, "auth0|carol").is_admin is False  # a claim is never stored

    def test_a_token_without_the_claim_never_revokes_local_admin(self, app, client, issuer):
        with app.app_context():
            make_user("auth0|carol", is_admin=True)
            product_id = _someone_elses_product()
        response = client.delete(f"/products/{product_id}/delete", headers=bearer(issuer.token("auth0|carol")))
        assert response.status_code == 200
        with app.app_context():
            assert db.session.get(User, "auth0|carol").is_admin is True


def _someone_elses_product() -> int:
    from tests.factories import make_product

    return make_product(owner="auth0|dave").id
