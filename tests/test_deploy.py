"""How operators run the API: the Dockerfile's rules, gunicorn's settings, and the container's start.

No Docker engine runs here, so the image is checked by reading its Dockerfile and by
running the same steps outside Docker: the files it copies, its environment, its boot.sh.
"""

import json
import os
import runpy
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
from alembic.script import ScriptDirectory
from flask_migrate import upgrade
from sqlalchemy import create_engine, event, make_url, text

from app import create_app
from app.auth.local_issuer import LocalIssuer
from app.config import DEFAULT_ADMIN_CLAIM, DEFAULT_LOCAL_AUDIENCE, DEFAULT_LOCAL_ISSUER
from app.extensions import db
from tests.databases import postgres_base_url
from tests.factories import bearer
from tests.live import ROOT, LiveServer, free_port


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) pairs, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def image_env() -> dict[str, str]:
    env = {}
    for instruction, args in dockerfile():
        if instruction == "ENV":
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


class TestDockerfile:
    def test_slim_python_base(self):
        base = [args for instruction, args in dockerfile() if instruction == "FROM"]
        assert len(base) == 1 and base[0].startswith("python:3.11-slim")

    def test_runs_as_a_non_root_user(self):
        users = [args for instruction, args in dockerfile() if instruction == "USER"]
        assert users and users[-1] not in ("root", "0")

    def test_installs_only_runtime_requirements(self):
        runs = " ".join(args for instruction, args in dockerfile() if instruction == "RUN")
        assert "pip install -r requirements.txt" in runs
        assert "requirements-dev" not in runs

    def test_migrations_run_at_start_not_at_build(self):
        runs = " ".join(args for instruction, args in dockerfile() if instruction == "RUN")
        assert "db upgrade" not in runs
        assert dict(dockerfile())["CMD"] == '["./boot.sh"]'
        boot = (ROOT / "boot.sh").read_text()
        assert boot.index("flask db upgrade") < boot.index("exec gunicorn -c gunicorn.conf.py wsgi:app")

    def test_serves_on_all_interfaces_port_5000_with_a_healthcheck(self):
        instructions = dict(dockerfile())
        assert instructions["EXPOSE"] == "5000"
        assert image_env()["HOST"] == "0.0.0.0" and image_env()["PORT"] == "5000"
        assert "/health" in instructions["HEALTHCHECK"]

    def test_build_context_leaves_out_secrets_and_local_state(self):
        ignored = (ROOT / ".dockerignore").read_text().split()
        for entry in (".env", ".venv", "instance", ".git", "tests"):
            assert entry in ignored


class TestGunicornConfig:
    def settings(self, monkeypatch, **env):
        for key in ("PORT", "HOST", "WEB_CONCURRENCY", "GUNICORN_BIND"):
            monkeypatch.delenv(key, raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        return runpy.run_path(str(ROOT / "gunicorn.conf.py"))

    def test_defaults(self, monkeypatch):
        conf = self.settings(monkeypatch)
        assert conf["bind"] == "127.0.0.1:5000"
        assert conf["workers"] == 2 * conf["usable_cpus"]() + 1
        assert conf["accesslog"] is None

    def test_stops_within_dockers_ten_seconds(self, monkeypatch):
        """Docker sends SIGKILL 10 s after SIGTERM: gunicorn must be done before (exit 0, not 137)."""
        monkeypatch.delenv("GUNICORN_GRACEFUL_TIMEOUT", raising=False)
        assert 0 < self.settings(monkeypatch)["graceful_timeout"] < 10

    def test_forwarded_headers_are_left_to_the_app(self, monkeypatch):
        """gunicorn must not turn X-Forwarded-Proto/-Ssl/-Protocol into https: TRUSTED_PROXIES decides, in the app."""
        for proxies in ("0", "2"):
            conf = self.settings(monkeypatch, TRUSTED_PROXIES=proxies)
            assert conf["forwarded_allow_ips"] == "" and conf["secure_scheme_headers"] == {}

    def test_port_and_concurrency_from_the_environment(self, monkeypatch):
        conf = self.settings(monkeypatch, PORT="8080", HOST="0.0.0.0", WEB_CONCURRENCY="3")
        assert conf["bind"] == "0.0.0.0:8080"
        assert conf["workers"] == 3


def fake_cgroup(root, files: dict[str, str]):
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content)
    return str(root)


@pytest.mark.parametrize(
    ("files", "affinity", "cpus"),
    [
        ({}, {0, 1, 2, 3}, 4),  # no cgroup limit: the affinity
        ({"cpu.max": "max 100000\n"}, {0, 1, 2, 3}, 4),  # cgroup v2, unlimited
        ({"cpu.max": "50000 100000\n"}, {0, 1, 2, 3}, 1),  # --cpus=0.5
        ({"cpu.max": "150000 100000\n"}, {0, 1, 2, 3}, 2),  # --cpus=1.5 rounds up
        ({"cpu.max": "400000 100000\n"}, {0}, 1),  # --cpuset-cpus=0 caps a larger quota
        ({"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, {0, 1}, 1),  # cgroup v1
        ({"cpu,cpuacct/cpu.cfs_quota_us": "200000", "cpu,cpuacct/cpu.cfs_period_us": "100000"}, {0, 1, 2}, 2),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, {0, 1, 2}, 3),  # v1, unlimited
        ({"cpu.max": "garbage"}, {0, 1}, 2),  # unreadable: the affinity
    ],
)
def test_workers_are_sized_from_the_cpus_the_process_may_use(tmp_path, files, affinity, cpus):
    usable_cpus = runpy.run_path(str(ROOT / "gunicorn.conf.py"))["usable_cpus"]
    assert usable_cpus(cgroup=fake_cgroup(tmp_path, files), affinity=affinity) == cpus


def test_web_concurrency_overrides_the_cpu_based_count(monkeypatch):
    monkeypatch.setenv("WEB_CONCURRENCY", "7")
    assert runpy.run_path(str(ROOT / "gunicorn.conf.py"))["workers"] == 7


def test_any_uid_in_group_zero_can_run_the_image():
    """OpenShift runs images as an arbitrary UID in group 0: what the app writes belongs to group 0."""
    runs = " ".join(args for instruction, args in dockerfile() if instruction == "RUN")
    assert "--gid 0" in runs and "--system" not in runs
    assert "chown 10001:0 instance" in runs and "chmod 0770 instance" in runs
    assert image_env()["HOME"] == "/home/dmarket" and "chmod 0770 /home/dmarket" in runs
    assert "umask 0002" in (ROOT / "boot.sh").read_text()


def test_scripts_keep_lf_line_endings():
    """A CRLF checkout (Windows, core.autocrlf) would break `#!/bin/sh` in the image."""
    attributes = (ROOT / ".gitattributes").read_text()
    for pattern in ("*.sh", "boot.sh", "Makefile", "*.py"):
        assert f"{pattern} text eol=lf" in attributes
    assert b"\r" not in (ROOT / "boot.sh").read_bytes()


@pytest.mark.slow
def test_the_image_steps_serve_the_api_like_make_run(tmp_path):
    """Copy what the Dockerfile copies, set its ENV, run its CMD: migrations, gunicorn, a real request."""
    image = tmp_path / "srv"
    image.mkdir()
    for instruction, args in dockerfile():
        if instruction == "COPY":
            *sources, _dest = args.split()
            for source in sources:
                path = ROOT / source
                if path.is_dir():
                    shutil.copytree(path, image / source, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy2(path, image / source)
    (image / "instance").mkdir()
    port = free_port()
    keep = ("PATH", "HOME", "LANG", "TMPDIR")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(image_env())
    env.update({"HOST": "127.0.0.1", "PORT": str(port), "WEB_CONCURRENCY": "2"})
    env["PATH"] = f"{os.path.dirname(sys.executable)}:{env['PATH']}:/usr/sbin"
    # The image's nginx (FRONT_PROXY=nginx) keeps its socket and pid here; its workers run as
    # `nobody` when the tests run as root, so the directory must be open to them.
    env["TMPDIR"] = tempfile.mkdtemp(prefix="dmarket-image-")
    os.chmod(env["TMPDIR"], 0o755)
    process = subprocess.Popen(["./boot.sh"], cwd=image, env=env, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                health = requests.get(f"{url}/health", timeout=2)
                if health.status_code != 502:  # nginx answers before gunicorn has bound its socket
                    break
            except requests.ConnectionError:
                pass
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline, "the container's command did not start serving"
            time.sleep(0.2)
        assert health.json() == {"status": "ok"}
        assert requests.get(f"{url}/health/ready", timeout=5).json()["status"] == "ready"
        issuer = LocalIssuer(
            instance_path=str(image / "instance"),
            issuer=DEFAULT_LOCAL_ISSUER,
            audience=DEFAULT_LOCAL_AUDIENCE,
            admin_claim=DEFAULT_ADMIN_CLAIM,
        )
        body = {"name": "Lamp", "description": "A desk lamp", "price": "19.99", "quantity": 1}
        created = requests.post(
            f"{url}/products/create", json=body, headers=bearer(issuer.mint(email="ops@example.com")), timeout=5
        )
        assert created.status_code == 201, created.text
        assert (image / "instance" / "dmarket.sqlite3").exists()
    finally:
        process.terminate()
        process.wait(timeout=30)
        process.stderr.close()
        nginx_pid = Path(env["TMPDIR"]) / "dmarket-nginx" / "nginx.pid"
        if nginx_pid.exists():
            os.kill(int(nginx_pid.read_text()), signal.SIGQUIT)
            time.sleep(0.5)
        shutil.rmtree(env["TMPDIR"], ignore_errors=True)


@pytest.mark.slow
def test_gunicorn_leaves_forwarded_scheme_headers_to_trusted_proxies(app, settings):
    """TRUSTED_PROXIES=0 promises X-Forwarded-* are ignored: gunicorn must not read them first."""
    forged = [{"X-Forwarded-Proto": "https"}, {"X-Forwarded-Ssl": "on"}, {"X-Forwarded-Protocol": "ssl"}]
    with LiveServer({**settings, "TRUSTED_PROXIES": "0"}, workers=1) as server:
        for headers in forged:
            listing = requests.get(f"{server.url}/products?per_page=1", headers=headers, timeout=5)
            assert listing.status_code == 200 and listing.json() == []
            assert "Strict-Transport-Security" not in listing.headers, headers
            login = requests.get(f"{server.url}/login", headers=headers, allow_redirects=False, timeout=5)
            assert login.status_code == 302
            assert "Secure" not in login.headers["Set-Cookie"] and "SameSite=Lax" in login.headers["Set-Cookie"]
    with LiveServer({**settings, "TRUSTED_PROXIES": "1"}, workers=1) as server:
        listing = requests.get(f"{server.url}/products", headers={"X-Forwarded-Proto": "https"}, timeout=5)
        assert "Strict-Transport-Security" in listing.headers
        login = requests.get(
            f"{server.url}/login", headers={"X-Forwarded-Proto": "https"}, allow_redirects=False, timeout=5
        )
        assert "Secure" in login.headers["Set-Cookie"] and "SameSite=None" in login.headers["Set-Cookie"]
        # The app's ProxyFix reads X-Forwarded-Proto only; gunicorn's other scheme headers stay ignored.
        listing = requests.get(f"{server.url}/products", headers={"X-Forwarded-Ssl": "on"}, timeout=5)
        assert "Strict-Transport-Security" not in listing.headers


@pytest.mark.slow
@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (b"GET /<script>echoed</script> HTTP/1.1 trailing\r\n\r\n", 400, "bad_request"),
        (b"GET /products HTTP/1.1\r\nHost: x\r\nX-<script>echoed: 1\r\n\r\n", 400, "bad_request"),
        (b"GET /products?q=" + b"echoed" * 1000 + b" HTTP/1.1\r\n\r\n", 414, "uri_too_long"),
    ],
)
def test_gunicorns_own_refusals_are_json_and_never_quote_the_request(settings, request_bytes, status, code):
    """Served directly (`make serve`, FRONT_PROXY=none), gunicorn refuses these before the app sees them."""
    with LiveServer(settings, workers=1) as server, socket.create_connection(("127.0.0.1", server.port), 5) as sock:
        sock.sendall(request_bytes)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == str(status).encode(), answer[:300]
    assert b"content-type: application/json" in head.lower()
    assert json.loads(body)["code"] == code
    assert b"echoed" not in body and b"<script>" not in body


@pytest.mark.slow
def test_no_server_banner_under_gunicorn_or_flask_run(app, settings):
    with LiveServer(settings, workers=1) as server:
        for path in ("/health", "/products", "/nowhere"):
            response = requests.get(f"{server.url}{path}", timeout=5)
            assert response.status_code in (200, 404) and "Server" not in response.headers, path
    port = free_port()
    env = {**os.environ, **settings, "FLASK_APP": "wsgi.py"}
    dev = subprocess.Popen(
        [sys.executable, "-m", "flask", "run", "--port", str(port)], cwd=ROOT, env=env, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = requests.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except requests.ConnectionError:
                assert dev.poll() is None and time.monotonic() < deadline, "flask run did not start"
                time.sleep(0.2)
        assert response.json() == {"status": "ok"}
        assert "Server" not in response.headers and "Date" in response.headers
    finally:
        dev.terminate()
        dev.wait(timeout=10)


@pytest.mark.slow
def test_a_stop_with_a_request_in_flight_ends_within_dockers_grace(app, settings):
    """SIGTERM (docker stop) while a client holds a sync worker: gunicorn exits 0 before Docker's 10 s SIGKILL."""
    server = LiveServer(settings, workers=1)
    del server.env["GUNICORN_GRACEFUL_TIMEOUT"]  # the image's default
    with server:
        slow = socket.create_connection(("127.0.0.1", server.port))
        slow.sendall(b"GET /products HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        time.sleep(0.5)
        started = time.monotonic()
        server.process.terminate()
        code = server.process.wait(timeout=15)
        elapsed = time.monotonic() - started
        slow.close()
        log = server.process.stderr.read()
    assert code == 0 and elapsed < 10, (code, elapsed)
    assert "Shutting down: Master" in log


@pytest.mark.slow
def test_health_probes_stay_out_of_the_access_log(app, settings):
    with LiveServer({**settings, "LOG_LEVEL": "INFO"}, workers=1) as server:
        for path in ("/health", "/health/ready", "/products", "/health"):
            assert requests.get(f"{server.url}{path}", timeout=5).status_code == 200
        server.process.terminate()
        server.process.wait(timeout=15)
        log = server.process.stderr.read()
    assert "GET /products 200" in log
    assert "GET /health" not in log


TRIGRAM_INDEXES = ("ix_products_name_trgm", "ix_products_description_trgm")
PHRASE_INDEXES = ("ix_products_name_phrase_trgm", "ix_products_description_phrase_trgm")  # migration 0009


@pytest.fixture
def pg_settings(settings):
    """A PostgreSQL database of its own (even when the suite runs on SQLite): 0003 only acts there.

    A database, not a schema: a concurrent index build waits for every older snapshot in its
    database, and the migration lock is per database, so other sessions must not share it.
    """
    url = make_url(postgres_base_url() or "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    server = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    name = f"test_ops_{uuid.uuid4().hex[:12]}"
    try:
        with server.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001  (any failure means: no server here)
        server.dispose()
        pytest.skip(f"PostgreSQL is not reachable at {url.host}:{url.port}: {exc.__class__.__name__}")
    try:
        yield {**settings, "DATABASE_URL": url.set(database=name).render_as_string(hide_password=False)}
    finally:
        with server.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        server.dispose()


def trigram_indexes(conn, names=TRIGRAM_INDEXES) -> dict[str, tuple[int, bool]]:
    """{name: (oid, valid)} of the search indexes in the schema on the search_path."""
    rows = conn.execute(
        text(
            "SELECT c.relname, c.oid, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE c.oid = to_regclass(:a) OR c.oid = to_regclass(:b)"
        ),
        {"a": names[0], "b": names[1]},
    )
    return {name: (oid, valid) for name, oid, valid in rows}


def test_migrations_0003_and_0009_build_the_search_indexes_concurrently(pg_settings):
    """CREATE INDEX CONCURRENTLY, outside any transaction: writes go on while a big table is indexed."""
    app = create_app(pg_settings)
    statements = []

    def record(conn, _cursor, statement, *_):
        statements.append((" ".join(statement.split()), conn.connection.dbapi_connection.autocommit))

    with app.app_context():
        event.listen(db.engine, "before_cursor_execute", record)
        upgrade()
        with db.engine.connect() as conn:
            built = trigram_indexes(conn) | trigram_indexes(conn, PHRASE_INDEXES)
        db.engine.dispose()
    for name in TRIGRAM_INDEXES + PHRASE_INDEXES:
        assert [
            auto for sql, auto in statements if sql.startswith(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ")
        ] == [True]
        assert built[name][1] is True


def test_migration_0003_keeps_indexes_built_beforehand_and_rebuilds_an_invalid_one(pg_settings):
    """An operator pre-builds the indexes by hand; an interrupted concurrent build leaves one INVALID."""
    app = create_app(pg_settings)
    with app.app_context():
        upgrade(revision="0002")
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
            for name, column in zip(TRIGRAM_INDEXES, ("name", "description"), strict=True):
                conn.execute(text(f"CREATE INDEX CONCURRENTLY {name} ON products USING gin ({column} gin_trgm_ops)"))
            conn.execute(
                text("UPDATE pg_index SET indisvalid = false WHERE indexrelid = to_regclass(:name)"),
                {"name": TRIGRAM_INDEXES[1]},
            )
            before = trigram_indexes(conn)
        upgrade()
        with db.engine.connect() as conn:
            after = trigram_indexes(conn)
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        db.engine.dispose()
    assert before[TRIGRAM_INDEXES[1]][1] is False
    assert after[TRIGRAM_INDEXES[0]] == before[TRIGRAM_INDEXES[0]]  # kept as it was: same index, valid
    assert after[TRIGRAM_INDEXES[1]][1] is True and after[TRIGRAM_INDEXES[1]][0] != before[TRIGRAM_INDEXES[1]][0]
    assert version == ScriptDirectory(str(ROOT / "migrations")).get_current_head()


def test_migration_0009_keeps_indexes_built_beforehand_and_rebuilds_an_invalid_one(pg_settings):
    """As 0003 does: the phrase indexes pre-built by hand are kept, one left INVALID is rebuilt."""
    app = create_app(pg_settings)
    with app.app_context():
        upgrade(revision="0008")
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for name, column in zip(PHRASE_INDEXES, ("name", "description"), strict=True):
                expression = f"translate({column}, ' -,./', 'qqqqq') gin_trgm_ops"
                conn.execute(text(f"CREATE INDEX CONCURRENTLY {name} ON products USING gin ({expression})"))
            conn.execute(
                text("UPDATE pg_index SET indisvalid = false WHERE indexrelid = to_regclass(:name)"),
                {"name": PHRASE_INDEXES[1]},
            )
            before = trigram_indexes(conn, PHRASE_INDEXES)
        upgrade()
        with db.engine.connect() as conn:
            after = trigram_indexes(conn, PHRASE_INDEXES)
        db.engine.dispose()
    assert before[PHRASE_INDEXES[1]][1] is False
    assert after[PHRASE_INDEXES[0]] == before[PHRASE_INDEXES[0]]
    assert after[PHRASE_INDEXES[1]][1] is True and after[PHRASE_INDEXES[1]][0] != before[PHRASE_INDEXES[1]][0]


def test_migration_0003_retries_a_build_that_deadlocks_with_a_concurrent_analyze(pg_settings):
    """A database-wide ANALYZE holding an old snapshot deadlocks with CREATE INDEX CONCURRENTLY: retry, don't fail."""
    app = create_app(pg_settings)
    statements, failures = [], []

    def record(_conn, _cursor, statement, *_):
        statements.append(statement)

    def migrate():
        with app.app_context():
            try:
                upgrade()
            except Exception as exc:  # noqa: BLE001  (reported by the assertion below)
                failures.append(exc)

    with app.app_context():
        upgrade(revision="0002")
        event.listen(db.engine, "before_cursor_execute", record)
        engine = create_engine(db.engine.url)
    maintenance = engine.connect().execution_options(isolation_level="REPEATABLE READ")
    maintenance.execute(text("SELECT 1"))  # a snapshot the concurrent build must wait for
    watcher = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    migration = threading.Thread(target=migrate)
    migration.start()
    waiting = (
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE query LIKE 'CREATE INDEX CONCURRENTLY%' AND wait_event_type = 'Lock' AND datname = current_database()"
    )
    deadline = time.monotonic() + 10
    while not watcher.execute(text(waiting)).scalar():
        assert time.monotonic() < deadline, "the concurrent build never waited"
        time.sleep(0.05)
    maintenance.execute(text("ANALYZE products"))  # waits on the build, which waits on us: PostgreSQL cancels the build
    maintenance.commit()
    migration.join(timeout=60)
    with app.app_context():
        with db.engine.connect() as conn:
            built = trigram_indexes(conn)
        db.engine.dispose()
    maintenance.close()
    watcher.close()
    engine.dispose()
    assert failures == []
    assert sum(s.startswith("CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_products_name_trgm") for s in statements) == 2
    assert [valid for _oid, valid in built.values()] == [True, True]
