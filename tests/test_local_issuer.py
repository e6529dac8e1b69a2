"""AUTH_MODE=local: the API runs with no account anywhere, and its tokens are verified like Auth0's."""

import base64
import json
import re
import stat
from pathlib import Path

import pytest

from app import ConfigError, create_app
from app.extensions import db
from app.models import BrowserSession, Product, User
from app.models.types import utcnow
from tests.factories import bearer, make_product, make_user

LOCAL = {"AUTH_MODE": "local", "AUTH0_ISSUER": "", "API_AUDIENCE": ""}
ORIGIN = {"Origin": "http://localhost"}


@pytest.fixture
def local_app(make_app):
    return make_app(**LOCAL)


def sign_in(app, client, data: dict, **kwargs):
    """POST the development form with this server's sign-in code."""
    headers = {"Origin": "http://localhost", **kwargs.pop("headers", {})}
    return client.post("/login", data={"code": app.config["LOCAL_SIGNIN_CODE"], **data}, headers=headers, **kwargs)


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

    def test_signing_in_sets_the_session_then_sees_other_to_next(self, local_app):
        client = local_app.test_client()
        response = sign_in(local_app, client, {"email": "dev@example.com", "name": "Dev", "next": "/openapi/"})
        assert response.status_code == 303 and response.headers["Location"] == "/openapi/"
        assert response.get_data() == b"" or b"<textarea" not in response.get_data()  # no token on a page
        assert client.get("/me").json["email"] == "dev@example.com"
        created = client.post(
            "/products/create",
            json={"name": "Lamp", "price": "1.00", "quantity": 1},
            headers={"Origin": "http://localhost"},
        )
        assert created.status_code == 201 and created.json["user_id"] == "local|dev@example.com"

    @pytest.mark.parametrize("target", [None, "https://evil.example/", "//evil.example/x", "openapi"])
    def test_without_a_local_next_it_lands_on_the_root(self, local_app, target):
        data = {"email": "dev@example.com", **({"next": target} if target else {})}
        response = sign_in(local_app, local_app.test_client(), data)
        assert response.status_code == 303 and response.headers["Location"] == "/"


class TestSessionToken:
    """POST /session/token: Swagger UI's bearer token for the browser's signed-in user."""

    def test_a_short_lived_token_for_the_signed_in_user(self, local_app):
        client = local_app.test_client()
        sign_in(local_app, client, {"email": "dev@example.com", "name": "Dev"})
        response = client.post("/session/token", headers=ORIGIN)
        assert response.status_code == 200
        body = response.json
        assert body["token_type"] == "Bearer" and 890 <= body["expires_in"] <= 900
        assert body["user"]["email"] == "dev@example.com" and body["user"]["is_admin"] is False
        claims = payload(body["access_token"])
        assert claims["sub"] == "local|dev@example.com" and claims["exp"] - claims["iat"] == body["expires_in"]
        stranger = local_app.test_client()  # the token alone, as a copied curl sends it
        created = stranger.post(
            "/products", json={"name": "Lamp", "price": 1, "quantity": 1}, headers=bearer(body["access_token"])
        )
        assert created.status_code == 201 and created.json["user_id"] == "local|dev@example.com"

    def test_an_admin_session_gets_an_admin_token(self, local_app):
        client = local_app.test_client()
        sign_in(local_app, client, {"email": "boss@example.com", "admin": "true"})
        token = client.post("/session/token", headers=ORIGIN).json["access_token"]
        assert local_app.test_client().get("/admin/check", headers=bearer(token)).json == {"is_admin": True}

    def test_never_outlives_the_session_token(self, local_app):
        client = local_app.test_client()
        sign_in(local_app, client, {"email": "dev@example.com"})
        with local_app.app_context():
            row = db.session.query(BrowserSession).one()
            issuer = local_app.extensions["dmarket.auth"]["local_issuer"]
            row.access_token = issuer.mint(email="dev@example.com", ttl=120)
            db.session.commit()
        body = client.post("/session/token", headers=ORIGIN).json
        assert 110 <= body["expires_in"] <= 120

    def test_needs_a_browser_session_not_a_bearer_token(self, local_app):
        token = mint(local_app, "dev@example.com")
        response = local_app.test_client().post("/session/token", headers={**ORIGIN, **bearer(token)})
        assert response.status_code == 401 and response.json["code"] == "unauthorized"
        assert "sign in at http://localhost:5000/login" in response.json["message"]
        assert "flask auth token EMAIL" in response.headers["WWW-Authenticate"]

    def test_a_cross_site_page_cannot_mint_one(self, local_app):
        client = local_app.test_client()
        sign_in(local_app, client, {"email": "dev@example.com"})
        response = client.post("/session/token", headers={"Origin": "https://evil.example"})
        assert response.status_code == 403 and response.json["code"] == "cross_site_request"
        assert "access_token" not in response.get_data(as_text=True)

    def test_not_offered_in_auth0_mode(self, client):
        assert client.post("/session/token", headers=ORIGIN).status_code == 404


class TestSignInPage:
    def test_admin_box(self, local_app):
        client = local_app.test_client()
        sign_in(local_app, client, {"email": "boss@example.com", "admin": "true"})
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
        sign_in(local_app, client, {"email": "dev@example.com"})
        assert client.get("/me").status_code == 200
        response = client.get("/logout")
        assert response.status_code == 302 and response.headers["Location"] == "/signed-out"
        assert client.get("/me").status_code == 401
        page = client.get("/signed-out")
        assert page.status_code == 200 and page.mimetype == "text/html"
        assert "<h1>Signed out</h1>" in page.get_data(as_text=True)

    def test_a_disabled_account_gets_no_session(self, local_app):
        with local_app.app_context():
            make_user("local|dev@example.com", email="dev@example.com", disabled_at=utcnow())
        client = local_app.test_client()
        page = sign_in(local_app, client, {"email": "dev@example.com"})
        assert page.status_code == 403 and page.json["code"] == "account_disabled"
        assert client.get("/me").status_code == 401

    def test_the_sign_in_page_passes_its_content_security_policy(self, local_app):
        page = local_app.test_client().get("/login")
        assert page.status_code == 200
        assert "<script" not in page.get_data(as_text=True)
        assert "form-action 'self'" in page.headers["Content-Security-Policy"]


def rows(app, model) -> int:
    with app.app_context():
        return db.session.query(model).count()


class TestSignInCode:
    """Reaching the port is not enough: the form needs the code from the server's log or instance/."""

    @pytest.mark.parametrize("remote_addr", ["127.0.0.1", "::1", "172.17.0.1", "203.0.113.9"])
    @pytest.mark.parametrize("code", [None, "", "wrong-code-0000", "x" * 200])
    def test_no_token_without_the_right_code_from_any_client(self, local_app, remote_addr, code):
        # The review's reproduction: a form post naming the server's own origin, asking for admin.
        data = {"email": "eve@x.example", "admin": "true", **({"code": code} if code is not None else {})}
        response = local_app.test_client().post(
            "/login", data=data, headers={"Origin": "http://localhost"}, environ_base={"REMOTE_ADDR": remote_addr}
        )
        assert response.status_code == 403
        assert response.json == {
            "code": "signin_code_required",
            "message": "The sign-in code is missing or wrong: open the link the server logged at start-up.",
        }
        assert "Set-Cookie" not in response.headers
        assert (rows(local_app, User), rows(local_app, BrowserSession)) == (0, 0)

    def test_a_browser_gets_the_form_back_with_the_reason(self, local_app):
        response = local_app.test_client().post(
            "/login",
            data={"email": "dev@example.com", "name": "Dev", "code": "guess-1234"},
            headers={"Origin": "http://localhost", "Accept": "text/html,application/xhtml+xml,*/*;q=0.8"},
        )
        assert response.status_code == 403 and response.mimetype == "text/html"
        html = response.get_data(as_text=True)
        assert "The sign-in code is missing or wrong" in html
        assert 'value="dev@example.com"' in html and 'value="Dev"' in html  # kept for the retry
        assert "guess-1234" not in html and "<textarea" not in html
        assert rows(local_app, User) == 0

    def test_the_logged_link_signs_in_in_one_step(self, make_app, capsys):
        app = make_app(**LOCAL)
        code = app.config["LOCAL_SIGNIN_CODE"]
        log = capsys.readouterr().err
        assert f"open http://localhost:5000/login?code={code} " in log
        client = app.test_client()
        form = client.get(f"/login?code={code}").get_data(as_text=True)
        assert re.search(rf'name="code"[^>]*value="{re.escape(code)}"', form)
        response = sign_in(app, client, {"email": "dev@example.com"})
        assert response.status_code == 303
        assert client.get("/me").json["user_id"] == "local|dev@example.com"

    def test_the_cli_prints_the_link(self, local_app, app):
        result = local_app.test_cli_runner().invoke(args=["auth", "signin-link"])
        assert result.exit_code == 0
        assert result.output == f"http://localhost:5000/login?code={local_app.config['LOCAL_SIGNIN_CODE']}\n"
        assert app.test_cli_runner().invoke(args=["auth", "signin-link"]).exit_code == 1  # auth0 mode

    def test_a_wrong_code_in_a_link_is_neither_echoed_nor_prefilled(self, local_app):
        html = local_app.test_client().get("/login?code=%3Cb%3Ephish").get_data(as_text=True)
        assert "phish" not in html and 'value=""' in html
        assert "not this server" in html

    def test_the_code_is_made_once_kept_private_and_shared_by_workers(self, make_app, settings):
        first, second = make_app(**LOCAL), make_app(**LOCAL)  # same instance/: other workers, a restart
        path = Path(settings["INSTANCE_PATH"]) / "local_signin_code"
        assert first.config["LOCAL_SIGNIN_CODE"] == second.config["LOCAL_SIGNIN_CODE"] == path.read_text()
        assert len(first.config["LOCAL_SIGNIN_CODE"]) >= 24
        assert stat.S_IMODE(path.stat().st_mode) == 0o600

    def test_a_configured_code_is_used_and_never_logged(self, make_app, settings, capsys):
        app = make_app(**LOCAL, LOCAL_SIGNIN_CODE="my-own-code-42")
        assert app.config["LOCAL_SIGNIN_CODE"] == "my-own-code-42"
        assert not (Path(settings["INSTANCE_PATH"]) / "local_signin_code").exists()
        log = capsys.readouterr().err
        assert "login?code=<LOCAL_SIGNIN_CODE>" in log and "my-own-code-42" not in log
        assert sign_in(app, app.test_client(), {"email": "dev@example.com"}).status_code == 303

    @pytest.mark.parametrize("code", ["short", "has space in it", "naïve-code-123"])
    def test_a_weak_or_odd_configured_code_stops_start_up(self, tmp_path, code):
        with pytest.raises(ConfigError, match="LOCAL_SIGNIN_CODE"):
            create_app({"INSTANCE_PATH": str(tmp_path), **LOCAL, "LOCAL_SIGNIN_CODE": code})

    def test_a_copied_cookie_is_worthless_after_logout(self, local_app):
        client = local_app.test_client()
        sign_in(local_app, client, {"email": "dev@example.com"})
        copy = client.get_cookie("dmarket_session").value
        client.get("/logout")
        thief = local_app.test_client()
        thief.set_cookie("dmarket_session", copy)
        created = thief.post("/products/create", json={"name": "Lamp", "price": 1, "quantity": 1}, headers=ORIGIN)
        assert created.status_code == 401
        assert (rows(local_app, Product), rows(local_app, BrowserSession)) == (0, 0)


class TestAdminCommands:
    def run(self, app, *args):
        return app.test_cli_runner().invoke(args=["admin", *args])

    def test_grant_list_revoke(self, local_app):
        with local_app.app_context():
            make_user("local|first@example.com", email="first@example.com", email_verified=True)
            make_user("local|second@example.com", email="second@example.com", email_verified=True)
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
            make_user("local|first@example.com", email="first@example.com", email_verified=True)
        unknown = self.run(local_app, "grant", "ghost@example.com")
        assert unknown.exit_code == 1 and "No user with this email has signed in yet." in unknown.output
        self.run(local_app, "grant", "first@example.com")
        last = self.run(local_app, "revoke", "first@example.com")
        assert last.exit_code == 1 and "last admin" in last.output

    def test_an_email_reaches_only_verified_accounts_and_user_id_reaches_one(self, local_app):
        with local_app.app_context():
            make_user("local|owner@example.com", email="owner@example.com", email_verified=True)
            make_user("auth0|squatter", email="Owner@example.com")
        granted = self.run(local_app, "grant", "owner@example.com")
        assert granted.exit_code == 0
        assert "local|owner@example.com <owner@example.com>: admin=yes" in granted.output
        assert "auth0|squatter <Owner@example.com>: skipped" in granted.output
        with local_app.app_context():
            assert db.session.get(User, "auth0|squatter").is_admin is False
        by_id = self.run(local_app, "grant", "--user-id", "auth0|squatter")
        assert by_id.exit_code == 0 and "auth0|squatter <Owner@example.com>: admin=yes" in by_id.output
        assert self.run(local_app, "revoke", "--user-id", "auth0|squatter").exit_code == 0
        with local_app.app_context():
            assert db.session.get(User, "auth0|squatter").is_admin is False

    def test_only_unverified_accounts_fail_naming_them(self, local_app):
        with local_app.app_context():
            make_user("auth0|squatter", email="owner@example.com")
        result = self.run(local_app, "grant", "owner@example.com")
        assert result.exit_code == 1
        assert "auth0|squatter: skipped" in result.output and "verified" in result.output
        with local_app.app_context():
            assert db.session.get(User, "auth0|squatter").is_admin is False

    @pytest.mark.parametrize("args", [[], ["a@example.com", "--user-id", "local|a@example.com"]])
    def test_exactly_one_of_email_or_user_id(self, local_app, args):
        result = self.run(local_app, "grant", *args)
        assert result.exit_code == 2 and "exactly one of EMAIL or --user-id" in result.output

    def test_local_tokens_carry_a_verified_email(self, local_app):
        token = local_app.test_cli_runner().invoke(args=["auth", "token", "dev@example.com"]).output.strip()
        assert payload(token)["email_verified"] is True
        assert local_app.test_client().get("/me", headers=bearer(token)).json["email_verified"] is True


class TestTheServersAddress:
    """Every link printed names the server that runs: HOST and PORT (as `make run` takes them) or PUBLIC_URL."""

    @pytest.mark.parametrize(
        "env, address",
        [
            ({}, "http://localhost:5000"),
            ({"PORT": "8350"}, "http://localhost:8350"),
            ({"PORT": "8350", "HOST": "127.0.0.1"}, "http://localhost:8350"),
            ({"PORT": "8350", "HOST": "0.0.0.0"}, "http://localhost:8350"),
            ({"PORT": "8350", "HOST": "::1"}, "http://localhost:8350"),
            ({"PORT": "8350", "HOST": "192.0.2.7"}, "http://192.0.2.7:8350"),
            ({"PORT": "8350", "HOST": "fd00::7"}, "http://[fd00::7]:8350"),
            ({"PORT": "8350", "PUBLIC_URL": "https://api.example.com"}, "https://api.example.com"),
        ],
    )
    def test_the_cli_link_and_the_log_name_it(self, make_app, capsys, env, address):
        app = make_app(**LOCAL, **env)
        code = app.config["LOCAL_SIGNIN_CODE"]
        assert f"to sign in, open {address}/login?code={code} " in capsys.readouterr().err
        result = app.test_cli_runner().invoke(args=["auth", "signin-link"])
        assert result.exit_code == 0 and result.output == f"{address}/login?code={code}\n"

    def test_a_bad_port_stops_start_up(self, tmp_path):
        with pytest.raises(ConfigError, match="PORT must be a whole number"):
            create_app({"INSTANCE_PATH": str(tmp_path), **LOCAL, "PORT": "http"})


class TestOneHostName:
    """Development: pages opened on the other loopback name go to the server's address, where sign-in holds."""

    @pytest.fixture
    def dev_app(self, make_app):
        return make_app(**LOCAL, APP_ENV="development", PORT="8350")

    @pytest.mark.parametrize("host", ["127.0.0.1:8350", "[::1]:8350"])
    @pytest.mark.parametrize("path", ["/openapi/", "/login?code=abc&next=/openapi/", "/signed-out"])
    def test_pages_on_the_other_loopback_name_are_sent_to_the_address(self, dev_app, host, path):
        response = dev_app.test_client().get(path, base_url=f"http://{host}")
        assert response.status_code == 307 and response.headers["Location"] == f"http://localhost:8350{path}"

    def test_pages_on_the_address_and_api_calls_stay(self, dev_app):
        client = dev_app.test_client()
        assert client.get("/openapi/", base_url="http://localhost:8350").status_code == 200
        assert client.get("/products", base_url="http://127.0.0.1:8350").status_code == 200
        assert client.get("/openapi/", base_url="http://127.0.0.1:9999").status_code == 200  # another server
        assert client.get("/openapi/", base_url="http://evil.example:8350").status_code == 200  # not a loopback alias

    def test_only_in_development(self, make_app):
        app = make_app(**LOCAL, PORT="8350")  # APP_ENV=testing
        assert app.test_client().get("/openapi/", base_url="http://127.0.0.1:8350").status_code == 200
