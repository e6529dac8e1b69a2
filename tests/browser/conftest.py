"""Real Chromium (Debian's /usr/bin/chromium, driven by Playwright) against real gunicorn servers.

Browsers choose their own headers (Origin, Referer, cookies, CORS preflights): these tests
catch what the HTTP-client tests cannot. Without Chromium they skip with one line saying
how to enable them, except under CI=true, where a missing browser fails the run.
"""

import importlib.util
import os
import shutil
import threading
from pathlib import Path

import pytest
from flask_migrate import upgrade
from werkzeug.serving import make_server
from werkzeug.utils import redirect
from werkzeug.wrappers import Request, Response

from app import create_app
from app.extensions import db
from tests.browser.pages import SIGNIN_CODE
from tests.issuer import LocalOIDCIssuer
from tests.live import LiveServer

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
HOW_TO_ENABLE = f"browser tests need Chromium at {CHROMIUM}: `apt-get install chromium` enables them"
LOCAL = {"AUTH_MODE": "local", "AUTH0_ISSUER": "", "API_AUDIENCE": "", "LOCAL_SIGNIN_CODE": SIGNIN_CODE}


def _missing() -> str | None:
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return HOW_TO_ENABLE
    if importlib.util.find_spec("playwright") is None:
        return "browser tests need Playwright: `pip install -r requirements-dev.txt` enables them"
    return None


# Without a browser, the browser tests are not collected and one summary line says how to enable them.
# Under CI they are always collected: a missing browser then fails them.
MISSING = None if os.environ.get("CI") == "true" else _missing()
collect_ignore_glob = ["test_*.py"] if MISSING else []


def pytest_terminal_summary(terminalreporter):
    if MISSING:
        terminalreporter.write_line(f"SKIPPED browser tests (tests/browser): {MISSING}", yellow=True)


def unavailable(reason: str):
    """Skip on a developer's machine; under CI the browser tests must run."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: browser tests may not skip)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium():
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        unavailable(HOW_TO_ENABLE)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("browser tests need Playwright: `pip install -r requirements-dev.txt` enables them")
    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
    yield browser
    browser.close()
    playwright.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, screenshot every open page and say where the pictures are."""
    report = yield
    context = getattr(item, "browser_context", None)
    if report.failed and context is not None:
        ARTIFACTS.mkdir(exist_ok=True)
        saved = []
        for number, page in enumerate(context.pages):
            path = ARTIFACTS / f"{item.name}-{report.when}-{number}.png"
            try:
                page.screenshot(path=str(path))  # the viewport: what a person sees
                saved.append(f"{path} ({page.url})")
            except Exception as exc:  # a crashed page must not hide the test's own failure
                saved.append(f"{path}: no screenshot ({exc.__class__.__name__})")
        report.sections.append(("browser screenshots", "\n".join(saved) or "no open page"))
    return report


class BrowserLog:
    """What the page did: console errors, uncaught exceptions, failed requests, 4xx/5xx answers."""

    def __init__(self):
        self.errors: list[str] = []
        self.failed: list[str] = []
        self.refused: list[str] = []

    def watch(self, page) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("requestfailed", lambda req: self.failed.append(f"{req.method} {req.url}: {req.failure}"))
        page.on("response", lambda r: r.status >= 400 and self.refused.append(f"{r.request.method} {r.url} {r.status}"))

    def _console(self, message) -> None:
        # Chromium logs every 4xx/5xx answer as "Failed to load resource"; `refused` lists those by URL.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(message.text)


@pytest.fixture
def context(chromium, request):
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    request.node.browser_context = context
    yield context
    context.close()


@pytest.fixture
def browser_log():
    return BrowserLog()


@pytest.fixture
def page(context, browser_log):
    page = context.new_page()
    browser_log.watch(page)
    return page


def migrate(env: dict) -> None:
    migrator = create_app(env)
    with migrator.app_context():
        upgrade()
        db.engine.dispose()


@pytest.fixture
def serve(settings):
    """Start the API under gunicorn with the suite's settings plus overrides; stopped after the test."""
    servers = []

    def start(**overrides) -> LiveServer:
        env = {**settings, **overrides}
        migrate(env)
        server = LiveServer(env, workers=1).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


class LoginPageIssuer(LocalOIDCIssuer):
    """The suite's OpenID provider, with a login page at /authorize and a redirecting end-session.

    Like Auth0's Universal Login: GET shows a form, POST signs in whoever was typed and
    sends the browser back to the client with a code.
    """

    def __init__(self):
        super().__init__()
        self.end_session_requests: list[dict] = []

    def _wsgi(self, environ, start_response):
        request = Request(environ)
        if request.path == "/authorize" and request.method == "GET" and "client_id" in request.args:
            response = Response(self._login_page(request), mimetype="text/html")
        elif request.path == "/authorize" and request.method == "POST":
            email = request.form.get("email", "")
            self.login_as = {"sub": f"auth0|{email}", "email": email, "name": email, "email_verified": True}
            response = self._authorize(request)
        elif request.path == "/oidc/logout":
            self.end_session_requests.append(request.args.to_dict())
            response = redirect(request.args.get("post_logout_redirect_uri", "/"))
        else:
            return super()._wsgi(environ, start_response)
        return response(environ, start_response)

    @staticmethod
    def _login_page(request: Request) -> str:
        return (
            "<!doctype html><title>Test issuer: sign in</title><h1>Test issuer</h1>"
            f'<form method="post" action="/authorize?{request.query_string.decode()}">'
            '<label>Email <input type="email" name="email" required></label>'
            '<button type="submit">Continue</button></form>'
        )


@pytest.fixture(scope="session")
def login_issuer():
    issuer = LoginPageIssuer().start()
    yield issuer
    issuer.stop()


class StaticSite:
    """A tiny site serving one HTML page at /: stands in for another origin (the SPA, a stranger)."""

    def __init__(self, html: str, host: str = "127.0.0.1", port: int = 0):
        def app(environ, start_response):
            return Response(html, mimetype="text/html")(environ, start_response)

        self._server = make_server(host, port, app, threaded=True)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def origin(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def site():
    sites = []

    def start(html: str = "<!doctype html><title>elsewhere</title><h1>Another origin</h1>", port: int = 0):
        try:
            started = StaticSite(html, port=port)
        except OSError as exc:
            unavailable(f"port {port} is taken ({exc.strerror}): the SPA's origin cannot be served")
        sites.append(started)
        return started

    yield start
    for started in sites:
        started.stop()
