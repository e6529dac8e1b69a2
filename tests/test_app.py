"""Cross-cutting behaviour: configuration, error shapes, CORS, docs, headers, request ids and logs."""

import base64
import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import threading

import pytest
import requests
from werkzeug.serving import make_server

from app import ConfigError, create_app
from app.config import instance_secret
from app.logs import FORMAT, TextFormatter
from tests.live import ROOT


class TestConfiguration:
    @pytest.mark.parametrize(
        "env, named",
        [
            ({"AUTH_MODE": "auth0", "API_AUDIENCE": ""}, "API_AUDIENCE"),
            ({"AUTH_MODE": "sometimes"}, "AUTH_MODE"),
            ({"AUTH_MODE": "auth0", "AUTH0_ISSUER": "", "AUTH0_DOMAIN": ""}, "AUTH0_DOMAIN"),
            ({"AUTH0_ISSUER": "", "AUTH0_DOMAIN": "https://tenant.auth0.com/"}, "AUTH0_DOMAIN"),
            ({"AUTH0_ISSUER": "ftp://issuer.example/"}, "AUTH0_ISSUER"),
            ({"CORS_ORIGINS": "*"}, "CORS_ORIGINS"),
            ({"CORS_ORIGINS": "localhost:3000"}, "CORS_ORIGINS"),
            ({"CORS_ORIGINS": "http://localhost:3000/app"}, "CORS_ORIGINS"),
            ({"HTTP_TIMEOUT": "soon"}, "HTTP_TIMEOUT"),
            ({"JWT_LEEWAY": "-5"}, "JWT_LEEWAY"),
            ({"DATABASE_URL": "dmarket.db"}, "DATABASE_URL"),
            ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
            ({"APP_ENV": "staging"}, "APP_ENV"),
            ({"APP_ENV": "production", "SECRET_KEY": "short"}, "SECRET_KEY"),
            ({"APP_ENV": "production", "AUTH_MODE": "local", "SECRET_KEY": "s" * 40}, "AUTH_MODE=local"),
            ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
            ({"RATELIMIT_WRITES": "lots"}, "RATELIMIT_WRITES"),
            ({"RATELIMIT_STORAGE_URI": "file:///tmp/x"}, "RATELIMIT_STORAGE_URI"),
            ({"RATELIMIT_ENABLED": "maybe"}, "RATELIMIT_ENABLED"),
            ({"DB_POOL_SIZE": "0", "DATABASE_URL": "postgresql://db/x"}, "DB_POOL_SIZE"),
            ({"TRUSTED_PROXIES": "-1"}, "TRUSTED_PROXIES"),
            ({"APP_ENV": "production", "SECRET_KEY": "s" * 40}, "PUBLIC_URL"),
            (
                {"APP_ENV": "production", "SECRET_KEY": "s" * 40, "AUTH0_CALLBACK_URL": "https://a.example/callback"},
                "PUBLIC_URL",
            ),
            ({"PUBLIC_URL": "api.example.com"}, "PUBLIC_URL"),
            ({"PUBLIC_URL": "https://api.example.com/?next=1"}, "PUBLIC_URL"),
            ({"AUTH_AUDIENCE_PARAMS": "aud"}, "AUTH_AUDIENCE_PARAMS"),
            ({"JWKS_MAX_AGE_SECONDS": "0"}, "JWKS_MAX_AGE_SECONDS"),
            ({"JWKS_STALE_IF_ERROR_SECONDS": "-1"}, "JWKS_STALE_IF_ERROR_SECONDS"),
        ],
    )
    def test_bad_settings_stop_start_up_naming_the_setting(self, tmp_path, issuer, env, named):
        config = {"INSTANCE_PATH": str(tmp_path), "AUTH0_ISSUER": issuer.url, "API_AUDIENCE": "https://api", **env}
        with pytest.raises(ConfigError, match=named):
            create_app(config)

    def test_production_needs_no_public_url_when_every_absolute_url_is_configured(self, tmp_path, issuer):
        config = {"INSTANCE_PATH": str(tmp_path), "AUTH0_ISSUER": issuer.url, "API_AUDIENCE": "https://api"}
        urls = {"AUTH0_CALLBACK_URL": "https://a.example/callback", "LOGOUT_REDIRECT_URL": "https://a.example/"}
        production = {**config, "APP_ENV": "production", "SECRET_KEY": "s" * 40}
        assert create_app({**production, **urls}).config["PUBLIC_URL"] is None
        assert (
            create_app({**production, "PUBLIC_URL": "https://a.example/"}).config["PUBLIC_URL"] == "https://a.example"
        )
        assert create_app(config).config["PUBLIC_URL"] == "http://localhost:5000"  # development's default

    def test_auth0_domain_gives_issuer_and_mode(self, tmp_path):
        app = create_app({"INSTANCE_PATH": str(tmp_path), "AUTH0_DOMAIN": "shop.eu.auth0.com", "API_AUDIENCE": "a"})
        assert app.config["AUTH_MODE"] == "auth0"
        assert app.config["AUTH0_ISSUER"] == "https://shop.eu.auth0.com/"

    @pytest.mark.parametrize("issuer", ["https://login.example.com", "https://login.example.com/"])
    def test_the_issuer_is_kept_as_written_and_urls_under_it_joined(self, tmp_path, issuer):
        app = create_app({"INSTANCE_PATH": str(tmp_path), "AUTH0_ISSUER": issuer, "API_AUDIENCE": "a"})
        assert app.config["AUTH0_ISSUER"] == issuer
        assert app.config["API_MANAGEMENT_AUDIENCE"] == "https://login.example.com/api/v2/"
        assert app.config["AUTH_AUDIENCE_PARAMS"] == ("audience", "resource")

    def test_nothing_configured_means_local_mode_on_sqlite_in_instance(self, tmp_path):
        app = create_app({"INSTANCE_PATH": str(tmp_path), "AUTH0_DOMAIN": "", "AUTH0_ISSUER": ""})
        assert app.config["AUTH_MODE"] == "local"
        assert app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'dmarket.sqlite3'}"
        assert app.config["CORS_ORIGINS"] == ["http://localhost:3000"]

    @pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
    def test_provider_style_postgres_urls_use_psycopg3(self, tmp_path, scheme):
        app = create_app({"INSTANCE_PATH": str(tmp_path), "DATABASE_URL": f"{scheme}://u:p@db:5432/shop"})
        assert app.config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u:p@db:5432/shop"

    def test_postgres_pool_is_configurable(self, tmp_path):
        app = create_app({"INSTANCE_PATH": str(tmp_path), "DATABASE_URL": "postgresql://db/shop", "DB_POOL_SIZE": "20"})
        options = app.config["SQLALCHEMY_ENGINE_OPTIONS"]
        assert "pool_pre_ping" not in options  # idle connections are pinged instead (app/extensions.py)
        assert app.config["DB_PING_IDLE_SECONDS"] == 1
        assert options["pool_size"] == 20
        assert options["pool_recycle"] == 1800

    def test_wsgi_entry_point_prints_one_clear_line(self, tmp_path):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTH", "API_", "DATABASE"))}
        env.update({"AUTH0_DOMAIN": "shop.eu.auth0.com", "API_AUDIENCE": ""})
        result = subprocess.run(
            [sys.executable, "-c", "import wsgi"], cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 1
        assert result.stderr.strip().splitlines()[-1] == (
            "DMarket API configuration error: API_AUDIENCE is required when AUTH_MODE=auth0"
        )
        assert "Traceback" not in result.stderr


class TestInstanceSecrets:
    """Secrets kept in instance/ (SECRET_KEY, the sign-in code, the local issuer's key) are made once:
    workers starting together agree on one, and none reads a half-written file."""

    def test_concurrent_creators_all_read_the_one_that_won(self, tmp_path):
        path = tmp_path / "instance" / "secret"
        made = iter(range(1000))
        start, results = threading.Barrier(16), []

        def worker():
            start.wait()
            results.append(instance_secret(path, lambda: f"value-{next(made)}-" + "x" * 100_000, "SECRET_KEY"))

        threads = [threading.Thread(target=worker) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(set(results)) == 1 and results[0] == path.read_text()
        assert results[0].endswith("x" * 100_000)  # whole, never cut
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        assert [p.name for p in path.parent.iterdir()] == ["secret"]  # no temporary file left behind

    def test_an_empty_file_is_a_clear_error(self, tmp_path):
        path = tmp_path / "secret"
        path.write_text("")
        with pytest.raises(ConfigError, match="is empty"):
            instance_secret(path, lambda: "new", "SECRET_KEY")


class TestErrors:
    def test_unknown_route_is_json_404(self, client):
        response = client.get("/nowhere")
        assert response.status_code == 404
        assert response.is_json and response.json["code"] == "not_found"

    def test_wrong_method_is_json_405_and_keeps_allow(self, client):
        response = client.delete("/products")
        assert response.status_code == 405
        assert response.json["code"] == "method_not_allowed"
        assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS", "POST"}

    def test_unexpected_errors_are_json_500_without_details(self, make_app, capsys):
        app = make_app()

        @app.get("/boom", doc_ui=False)
        def boom():
            raise RuntimeError("secret internals")

        response = app.test_client().get("/boom")
        assert response.status_code == 500
        assert response.json == {
            "code": "internal_error",
            "message": "An unexpected error occurred; it has been logged.",
        }
        assert "secret internals" not in response.get_data(as_text=True)
        assert "RuntimeError: secret internals" in capsys.readouterr().err


class TestCors:
    def test_allowed_origin_with_credentials(self, client):
        response = client.get("/products", headers={"Origin": "http://localhost:3000"})
        assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
        assert response.headers["Access-Control-Allow-Credentials"] == "true"
        exposed = {h.strip() for h in response.headers["Access-Control-Expose-Headers"].split(",")}
        assert {"ETag", "X-Total-Count", "Link", "Location"} <= exposed

    def test_other_origins_get_no_cors_headers(self, client):
        response = client.get("/products", headers={"Origin": "https://evil.example"})
        assert response.status_code == 200
        assert not [h for h in response.headers.keys() if h.startswith("Access-Control")]

    def test_preflight_allows_authorization_and_if_match(self, client):
        response = client.options(
            "/products/1/update",
            headers={
                "Origin": "http://localhost:3000",
                "Access-Control-Request-Method": "PUT",
                "Access-Control-Request-Headers": "authorization, if-match, content-type",
            },
        )
        assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
        assert set(response.headers["Access-Control-Allow-Headers"].split(", ")) == {
            "authorization",
            "if-match",
            "content-type",
        }

    def test_requests_without_origin_skip_cors_and_lose_no_header(self, app, client):
        """No Origin (curl, a server, the bench): the CORS step is skipped, which Flask-CORS itself
        would have answered with no header either; checked on its own hook, for each kind of answer."""
        (cors_hook,) = [hook for hook in app.after_request_funcs[None] if hasattr(hook, "__wrapped__")]
        for method, path in (("GET", "/products"), ("GET", "/products/999"), ("OPTIONS", "/products/1/update")):
            response = client.open(path, method=method, headers={"Access-Control-Request-Method": "PUT"})
            assert not [h for h in response.headers.keys() if h.startswith("Access-Control")]
            assert "Origin" not in response.headers.get("Vary", "")
            with app.test_request_context(path, method=method):
                before = list(response.headers.items())
                assert list(cors_hook.__wrapped__(response).headers.items()) == before

    def test_configured_origins(self, make_app):
        client = make_app(CORS_ORIGINS="https://shop.example, https://admin.example").test_client()
        for origin in ("https://shop.example", "https://admin.example"):
            assert client.get("/products", headers={"Origin": origin}).headers["Access-Control-Allow-Origin"] == origin
        assert (
            "Access-Control-Allow-Origin"
            not in client.get("/products", headers={"Origin": "http://localhost:3000"}).headers
        )


# Headers for HTTP itself and for browsers, not for API clients to read: not listed per response.
TRANSPORT_AND_BROWSER_POLICY = {
    "Content-Type", "Content-Length", "Vary", "X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy",
    "Cross-Origin-Opener-Policy", "Content-Security-Policy",
}  # fmt: skip


class TestDocs:
    def test_root_redirects_to_the_docs(self, client):
        response = client.get("/")
        assert response.status_code == 302
        assert response.headers["Location"] == "/openapi"

    def test_swagger_ui_is_served_by_the_app(self, client):
        page = client.get("/openapi", follow_redirects=True)
        assert page.status_code == 200
        html = page.get_data(as_text=True)
        assert '<script src="swagger/js/swagger-ui-bundle.js">' in html and '"docUrl": "/openapi/openapi.json"' in html
        assert "https://" not in html and "//cdn" not in html
        for asset in ("/openapi/swagger/js/swagger-ui-bundle.js", "/openapi/swagger/css/swagger-ui.css"):
            with client.get(asset) as response:
                assert response.status_code == 200
        with client.get("/static/console.js") as script:
            assert script.status_code == 200 and b"SwaggerUIBundle(" in script.data

    def test_every_route_is_documented(self, app, client):
        spec = client.get("/openapi/openapi.json").json
        documented = {(path, method.upper()) for path, item in spec["paths"].items() for method in item}
        for rule in app.url_map.iter_rules():
            if rule.endpoint == "static" or rule.endpoint.startswith(("openapi", "swagger", "index")):
                continue
            path = re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule.rule)
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                assert (path, method) in documented, f"{method} {path} is missing from the spec"

    def test_protected_operations_declare_their_security_and_their_errors(self, client):
        spec = client.get("/openapi/openapi.json").json
        assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
        # The cookie is described, not offered as a scheme: Swagger UI's Authorize dialog cannot set a cookie.
        assert set(spec["components"]["securitySchemes"]) == {"bearerAuth"}
        assert "dmarket_session" in spec["components"]["securitySchemes"]["bearerAuth"]["description"]
        assert "dmarket_session" in spec["info"]["description"]
        expectations = {
            ("/products/create", "post"): {"201", "401", "403", "413", "415", "422", "429", "500"},
            ("/products/{product_id}/update", "put"): {"200", "401", "403", "404", "412", "422"},
            ("/products/{product_id}/delete", "delete"): {"200", "401", "403", "404", "412"},
            ("/me", "get"): {"200", "401"},
            ("/admin/users", "get"): {"200", "401", "403", "422"},
            ("/admin/set", "post"): {"200", "401", "403", "404", "422"},
            ("/admin/unset", "post"): {"200", "401", "403", "404", "409", "422"},
            ("/admin/check", "get"): {"200", "401"},
            ("/users/{user_id}", "delete"): {"200", "401", "403", "404", "409"},
        }
        for (path, method), statuses in expectations.items():
            operation = spec["paths"][path][method]
            assert operation["security"] == [{"bearerAuth": []}]
            assert statuses <= set(operation["responses"]), path
        assert spec["paths"]["/products"]["get"]["security"] == []  # public, and said so

    def test_the_headers_clients_read_are_the_documented_ones(self, make_app, user_headers):
        """Both ways: what the spec calls required is sent, and nothing a client reads is sent undocumented."""
        client = make_app(RATELIMIT_DEFAULT="5 per minute").test_client()
        spec = client.get("/openapi/openapi.json").json
        lamp = {"name": "Lamp", "price": "2", "quantity": 1}
        created = client.post("/products/create", json=lamp, headers=user_headers)
        answers = {
            ("/products", "get", "200"): client.get("/products"),
            ("/products/{product_id}", "get", "200"): client.get(created.headers["Location"]),
            ("/products/create", "post", "201"): created,
            ("/products/create", "post", "401"): client.post("/products/create", json={}),
            ("/products", "get", "429"): [client.get("/products") for _ in range(6)][-1],  # past 5 per minute
        }
        for (path, method, status), response in answers.items():
            assert str(response.status_code) == status, (path, status)
            documented = spec["paths"][path][method]["responses"][status]["headers"]
            required = {name for name, header in documented.items() if header["required"]}
            sent = set(response.headers.keys()) - TRANSPORT_AND_BROWSER_POLICY
            assert required <= sent, (path, status, required - sent)
            assert sent <= set(documented), (path, status, sent - set(documented))

    def test_conditional_reads_are_documented_and_answer_as_documented(self, client, user_headers):
        spec = client.get("/openapi/openapi.json").json
        created = client.post(
            "/products/create", json={"name": "Lamp", "price": "2", "quantity": 1}, headers=user_headers
        )
        for path, url in (("/products", "/products"), ("/products/{product_id}", created.headers["Location"])):
            operation = spec["paths"][path]["get"]
            assert {"name": "If-None-Match", "in": "header"}.items() <= operation["parameters"][-1].items()
            assert {"ETag", "Cache-Control"} <= set(operation["responses"]["200"]["headers"])
            etag = client.get(url).headers["ETag"]
            response = client.get(url, headers={"If-None-Match": etag})
            assert response.status_code == 304
            documented = operation["responses"]["304"]["headers"]
            assert set(response.headers.keys()) - TRANSPORT_AND_BROWSER_POLICY == set(documented)

    def test_error_responses_use_the_error_schema(self, client):
        spec = client.get("/openapi/openapi.json").json
        for path, item in spec["paths"].items():
            for operation in item.values():
                for status, response in operation["responses"].items():
                    if (path, status) == ("/health/ready", "503"):
                        continue  # the readiness report itself, listing what is down
                    if status.startswith(("4", "5")):
                        schema = response["content"]["application/json"]["schema"]
                        assert schema == {"$ref": "#/components/schemas/ErrorOut"}


class TestRequestIds:
    def test_a_valid_request_id_is_echoed(self, client):
        assert client.get("/products", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"

    @pytest.mark.parametrize("incoming", [None, "has spaces", "x" * 200, "<script>"])
    def test_otherwise_one_is_generated(self, client, incoming):
        headers = {"X-Request-ID": incoming} if incoming else {}
        generated = client.get("/products", headers=headers).headers["X-Request-ID"]
        assert len(generated) == 32 and generated != incoming

    def test_one_access_log_line_per_request(self, make_app, capsys):
        client = make_app(LOG_LEVEL="INFO").test_client()
        capsys.readouterr()
        client.get("/products?page=1", headers={"X-Request-ID": "req-42"})
        lines = [line for line in capsys.readouterr().err.splitlines() if "app.access" in line]
        assert len(lines) == 1
        assert "[req-42] app.access: GET /products 200 " in lines[0]
        assert lines[0].endswith("ms 127.0.0.1")  # the address the app trusted (TRUSTED_PROXIES)
        assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO \[req-42\]", lines[0])

    def test_access_records_name_their_source_and_leave_other_loggers_whole(self, make_app):
        """The access line skips the caller lookup for itself only: other records keep file, line and thread."""
        client = make_app(LOG_LEVEL="INFO").test_client()
        records = []
        capture = logging.Handler()
        capture.emit = records.append
        loggers = [logging.getLogger("app.access"), logging.getLogger("tests.elsewhere")]
        for logger in loggers:
            logger.addHandler(capture)
        try:
            client.get("/products")
            loggers[1].warning("another library's line")
        finally:
            for logger in loggers:
                logger.removeHandler(capture)
        access, other = records
        assert (access.filename, access.funcName, access.getMessage()[:13]) == (
            "http.py",
            "_log_access",
            "GET /products",
        )
        assert (other.filename, other.funcName) == (
            "test_app.py",
            self.test_access_records_name_their_source_and_leave_other_loggers_whole.__name__,
        )
        assert other.lineno > 0 and other.threadName == threading.current_thread().name

    @pytest.mark.parametrize("created", [1_700_000_000.0, 1_700_000_000.999, 1_700_000_001.5, 1_699_999_999.25])
    def test_log_times_read_as_the_standard_formatter_writes_them(self, created):
        """The text format formats each second once: every line must still carry its own time."""
        ours, standard = TextFormatter(), logging.Formatter(FORMAT)
        for moment in (created, created + 0.001, created + 1):  # the same second, then the next one
            record = logging.makeLogRecord({"created": moment, "msecs": moment % 1 * 1000 // 1, "msg": "m"})
            record.request_id = "-"
            assert ours.format(record) == standard.format(record)


class TestSecurityHeaders:
    def test_json_responses_forbid_everything_a_page_could_do(self, client):
        headers = client.get("/products").headers
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Referrer-Policy"] == "no-referrer"
        assert headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
        assert "Strict-Transport-Security" not in headers

    def test_errors_carry_them_too(self, client):
        assert client.get("/nowhere").headers["X-Content-Type-Options"] == "nosniff"

    @pytest.mark.parametrize("path", ["/openapi/", "/signed-out"])
    def test_pages_let_the_browser_send_their_origin(self, client, path):
        """Under no-referrer a browser sends `Origin: null` on a page's form POST: the Origin check would refuse it."""
        response = client.get(path)
        assert response.status_code == 200 and response.mimetype == "text/html"
        assert response.headers["Referrer-Policy"] == "same-origin"

    def test_docs_page_runs_only_its_own_script_files(self, client):
        response = client.get("/openapi/")
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self';" in csp  # no inline script to allow, by hash or otherwise
        assert "connect-src 'self';" in csp and "frame-ancestors 'none'" in csp
        assert b"<script>" not in response.get_data()  # the settings are a JSON data block, never run
        assert b'<script type="application/json" id="dmarket-console">' in response.get_data()

    def test_the_oauth2_redirect_page_hashes_its_inline_script(self, client):
        response = client.get("/openapi/oauth2-redirect.html")
        csp = response.headers["Content-Security-Policy"]
        inline = response.get_data().split(b"<script>")[1].split(b"</script>")[0]
        assert base64.b64encode(hashlib.sha256(inline).digest()).decode() in csp

    def test_hsts_only_over_https(self, client):
        headers = client.get("/products", base_url="https://api.example.com").headers
        assert headers["Strict-Transport-Security"].startswith("max-age=31536000")

    def test_https_behind_a_trusted_proxy_counts_as_https(self, make_app):
        client = make_app(TRUSTED_PROXIES="1").test_client()
        headers = client.get("/products", headers={"X-Forwarded-Proto": "https"}).headers
        assert "Strict-Transport-Security" in headers

    def test_forwarded_headers_are_ignored_without_trusted_proxies(self, client):
        headers = client.get("/products", headers={"X-Forwarded-Proto": "https"}).headers
        assert "Strict-Transport-Security" not in headers


class TestDevelopmentServerLog:
    def test_each_request_is_logged_once(self, make_app, capsys):
        """`flask run` (Werkzeug's server): the app's access line, not Werkzeug's own as well."""
        app = make_app(LOG_LEVEL="INFO")
        server = make_server("127.0.0.1", 0, app)
        one_request = threading.Thread(target=server.handle_request)
        capsys.readouterr()
        one_request.start()
        try:
            assert requests.get(f"http://127.0.0.1:{server.server_port}/products", timeout=5).status_code == 200
        finally:
            one_request.join(timeout=10)  # the server logs once the response is written
            server.server_close()
        err = capsys.readouterr().err
        assert err.count("app.access: GET /products 200") == 1
        assert '"GET /products HTTP/1.1" 200' not in err


class TestJsonLogs:
    def test_every_line_is_a_json_object_with_the_request_id(self, make_app, capsys):
        client = make_app(LOG_LEVEL="INFO", LOG_FORMAT="json").test_client()
        capsys.readouterr()
        client.get("/products?page=1", headers={"X-Request-ID": "req-7"})
        entries = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
        access = [e for e in entries if e["logger"] == "app.access"]
        assert len(access) == 1
        assert access[0]["request_id"] == "req-7"
        assert access[0]["method"] == "GET" and access[0]["path"] == "/products" and access[0]["status"] == 200
        assert isinstance(access[0]["duration_ms"], float)
        assert access[0]["time"].endswith("+00:00")

    def test_errors_keep_their_traceback_inside_the_json_line(self, make_app, capsys):
        app = make_app(LOG_FORMAT="json")

        @app.get("/boom")
        def boom():
            raise RuntimeError("kaboom")

        capsys.readouterr()
        assert app.test_client().get("/boom", headers={"X-Request-ID": "req-9"}).status_code == 500
        lines = capsys.readouterr().err.splitlines()
        entry = next(json.loads(line) for line in lines if '"unhandled error"' in line)
        assert entry["request_id"] == "req-9" and "RuntimeError: kaboom" in entry["exception"]
