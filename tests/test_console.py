"""Swagger UI's page at /openapi/: who is signed in, how Try it out gets a credential, and its Authorize."""

import json
import re

import pytest

from tests.issuer import AUDIENCE
from tests.signin import sign_in

LOCAL = {"AUTH_MODE": "local", "AUTH0_ISSUER": "", "API_AUDIENCE": ""}
ORIGIN = {"Origin": "http://localhost"}
SWAGGER_CLIENT = "dmarket-swagger"


def settings_of(response) -> dict:
    """The JSON block the page's script reads."""
    block = re.search(rb'<script type="application/json" id="dmarket-console">(.*?)</script>', response.data, re.S)
    return json.loads(block.group(1))


class TestLocalMode:
    @pytest.fixture
    def local(self, make_app):
        return make_app(**LOCAL)

    def test_not_signed_in(self, local):
        page = local.test_client().get("/openapi/")
        assert page.status_code == 200
        assert page.headers["Cache-Control"] == "no-store" and "Cookie" in page.headers["Vary"]
        assert settings_of(page) == {
            "docUrl": "/openapi/openapi.json",
            "mode": "local",
            "signedIn": None,
            "signInUrl": "/login?next=/openapi/",
            "signOutUrl": "/logout",
            "tokenUrl": "/session/token",
            "hostHint": None,
            "oauth": None,
            "oauthScheme": "signIn",
        }

    def test_signed_in_by_the_session(self, local):
        client = local.test_client()
        code = local.config["LOCAL_SIGNIN_CODE"]
        client.post("/login", data={"email": "dev@example.com", "name": "Dev", "code": code}, headers=ORIGIN)
        settings = settings_of(client.get("/openapi/"))
        assert settings["signedIn"] == {
            "email": "dev@example.com",
            "name": "Dev",
            "user_id": "local|dev@example.com",
            "is_admin": False,
        }
        assert settings["tokenUrl"] == "/session/token"

    def test_a_session_that_ended_is_not_signed_in(self, local):
        client = local.test_client()
        code = local.config["LOCAL_SIGNIN_CODE"]
        client.post("/login", data={"email": "dev@example.com", "code": code}, headers=ORIGIN)
        client.get("/logout")
        assert settings_of(client.get("/openapi/"))["signedIn"] is None

    def test_the_other_loopback_name_is_explained_on_the_page(self, make_app):
        app = make_app(**LOCAL, PORT="8350")  # APP_ENV=testing: no redirect, the page says why
        hint = settings_of(app.test_client().get("/openapi/", base_url="http://127.0.0.1:8350"))["hostHint"]
        assert hint.startswith("This request went to 127.0.0.1:8350") and "http://localhost:8350" in hint

    def test_the_document_offers_bearer_auth_only(self, local):
        spec = local.test_client().get("/openapi/openapi.json").json
        assert set(spec["components"]["securitySchemes"]) == {"bearerAuth"}
        assert spec["paths"]["/products"]["post"]["security"] == [{"bearerAuth": []}]


class TestAuth0Mode:
    @pytest.fixture
    def swagger_app(self, make_app):
        return make_app(SWAGGER_UI_CLIENT_ID=SWAGGER_CLIENT)

    def test_authorize_signs_in_at_the_issuer_with_pkce_and_the_audience(self, swagger_app, issuer):
        page = swagger_app.test_client().get("/openapi/")
        settings = settings_of(page)
        assert settings["tokenUrl"] is None and settings["signedIn"] is None
        assert settings["oauth"] == {
            "clientId": SWAGGER_CLIENT,
            "usePkceWithAuthorizationCodeGrant": True,
            "scopes": ["openid", "profile", "email"],
            "additionalQueryStringParams": {"audience": AUDIENCE, "resource": AUDIENCE},
            "redirectUrl": "http://localhost:5000/openapi/oauth2-redirect.html",
        }
        # Its popup reports back to this page, and Swagger UI asks the issuer for the token.
        assert page.headers["Cross-Origin-Opener-Policy"] == "same-origin-allow-popups"
        csp = page.headers["Content-Security-Policy"]
        assert f"connect-src 'self' {issuer.url.rstrip('/')};" in csp and "script-src 'self';" in csp
        redirect_page = swagger_app.test_client().get("/openapi/oauth2-redirect.html")
        assert redirect_page.headers["Cross-Origin-Opener-Policy"] == "unsafe-none"

    def test_the_document_offers_the_sign_in_beside_bearer_auth(self, swagger_app, issuer):
        spec = swagger_app.test_client().get("/openapi/openapi.json").json
        assert spec["components"]["securitySchemes"]["signIn"]["flows"] == {
            "authorizationCode": {
                "authorizationUrl": f"{issuer.url}authorize",
                "tokenUrl": f"{issuer.url}oauth/token",
                "scopes": {"openid": "Who you are", "profile": "Your name", "email": "Your email address"},
            }
        }
        for path, item in spec["paths"].items():
            for operation in item.values():
                if operation["security"]:
                    assert operation["security"] == [{"bearerAuth": []}, {"signIn": ["openid"]}], path

    def test_without_its_client_the_page_and_document_are_as_before(self, client):
        page = client.get("/openapi/")
        assert settings_of(page)["oauth"] is None and page.headers["Cross-Origin-Opener-Policy"] == "same-origin"
        spec = client.get("/openapi/openapi.json").json
        assert set(spec["components"]["securitySchemes"]) == {"bearerAuth"}

    def test_an_issuer_down_at_first_leaves_it_out_until_it_answers(self, swagger_app, issuer):
        issuer.mode = "error"
        client = swagger_app.test_client()
        assert "signIn" not in client.get("/openapi/openapi.json").json["components"]["securitySchemes"]
        page = client.get("/openapi/")
        assert page.status_code == 200 and settings_of(page)["oauth"] is None
        issuer.mode = "up"
        assert "signIn" in client.get("/openapi/openapi.json").json["components"]["securitySchemes"]
        assert settings_of(client.get("/openapi/"))["oauth"]["clientId"] == SWAGGER_CLIENT

    def test_signed_in_by_the_session_the_page_says_who(self, client):
        assert sign_in(client).status_code == 303
        settings = settings_of(client.get("/openapi/"))
        assert settings["signedIn"]["email"] == "alice@example.com" and settings["tokenUrl"] is None

    def test_no_session_token_is_minted_for_the_page(self, client, user_headers):
        sign_in(client)
        assert client.post("/session/token", headers=ORIGIN).status_code == 404
        assert client.post("/session/token", headers={**ORIGIN, **user_headers}).status_code == 404
        assert "access_token" not in client.get("/openapi/").get_data(as_text=True)


def test_the_swagger_ui_client_is_ignored_in_local_mode(make_app):
    app = make_app(**LOCAL, SWAGGER_UI_CLIENT_ID=SWAGGER_CLIENT)
    assert app.config["SWAGGER_UI_CLIENT_ID"] is None
    assert settings_of(app.test_client().get("/openapi/"))["oauth"] is None
