"""In-process cost of each benchmarked request: CPU microseconds per request through the WSGI app.

    .venv/bin/python -m bench.profile                  # table: us/request for each row, and the ceiling's
    .venv/bin/python -m bench.profile --profile "GET /products"   # cProfile of that row, top functions
    .venv/bin/python -m bench.profile --compare /tmp/base  # the same rows on another checkout, interleaved

No server, no sockets, no load generator: each row's requests are called on the real app
(`create_app`, every hook, the limiter, local bearer tokens) in a loop and timed with the
process's CPU clock, which another process on a busy machine barely disturbs. The bare Flask
app of bench/ceiling.py is timed the same way, so the "of ceiling" column is what the API's
own work costs on top of Flask (without gunicorn and the network, which both pay alike).
BENCH_DATABASE_URL runs it on PostgreSQL (the database server's CPU is then not counted).
"""

import argparse
import cProfile
import io
import json
import logging
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from werkzeug.test import create_environ

from app.auth.local_issuer import LocalIssuer
from bench.ceiling import app as ceiling_app
from bench.seed import seed

ROWS = 1000
SERVER_ENV = {
    "APP_ENV": "development",
    "AUTH_MODE": "local",
    "LOG_LEVEL": "INFO",  # as deployed and as the bench's servers run: the access log writes a line per request
    "RATELIMIT_DEFAULT": "100000000 per minute",
    "RATELIMIT_WRITES": "100000000 per minute",
    "RATELIMIT_PER_ADDRESS": "100000000 per minute",
    "LIST_CACHE_SIZE": "0",  # as the bench's servers run: each list request does its work
}


def _call(app, environ_template: dict, body: bytes = b"") -> int:
    environ = dict(environ_template)
    environ["wsgi.input"] = io.BytesIO(body)
    if body:
        environ["CONTENT_LENGTH"] = str(len(body))
    status = []
    result = app(environ, lambda s, h, exc_info=None: status.append(s))
    try:
        for _chunk in result:
            pass
    finally:
        if hasattr(result, "close"):
            result.close()
    return int(status[0][:3])


def _environ(method: str, path: str, headers: dict | None = None, body: bytes | None = None) -> dict:
    return create_environ(
        path=path,
        method=method,
        headers=headers or {},
        data=body,
        content_type="application/json" if body is not None else None,
        environ_base={"REMOTE_ADDR": "127.0.0.1"},
    )


def rows(app, token: str) -> dict:
    """Each benchmarked request: (environ template, bodies cycled through, expected status)."""
    auth = {"Authorization": f"Bearer {token}"}
    middle = ROWS // 2
    get_one = _environ("GET", f"/products/{middle}")
    first_page = _environ("GET", "/products")
    etag_one = _etag(app, get_one)
    etag_list = _etag(app, first_page)
    put = [json.dumps({"quantity": q, "price": "12.50"}).encode() for q in range(1, 10_001)]
    create = [json.dumps({"name": "Bench lamp", "price": "19.99", "quantity": 1}).encode()]
    table = {
        "ceiling (bare Flask)": (ceiling_app, _environ("GET", "/ceiling"), [b""], 200),
        "floor (every hook, empty view)": (app, _environ("GET", "/bench-floor"), [b""], 200),
        "GET /products": (app, first_page, [b""], 200),
        "GET /products?per_page=25 (bearer)": (app, _environ("GET", "/products?per_page=25", auth), [b""], 200),
        "GET /products deep page": (app, _environ("GET", f"/products?page={ROWS // 50 - 1}"), [b""], 200),
        "GET /products?q=": (app, _environ("GET", "/products?q=lamp"), [b""], 200),
        "GET /products/<id>": (app, get_one, [b""], 200),
        "GET /products (304)": (app, _environ("GET", "/products", {"If-None-Match": etag_list}), [b""], 304),
        "GET /products/<id> (304)": (
            app,
            _environ("GET", f"/products/{middle}", {"If-None-Match": etag_one}),
            [b""],
            304,
        ),
        "PUT /products/<id>/update": (app, _environ("PUT", f"/products/{middle}/update", auth, put[0]), put, 200),
        "POST /products/create": (app, _environ("POST", "/products/create", auth, create[0]), create, 201),
    }
    return table


def _etag(app, environ: dict) -> str:
    captured = {}

    def start_response(status, headers, exc_info=None):
        captured.update(headers)

    environ = dict(environ, **{"wsgi.input": io.BytesIO()})
    result = app(environ, start_response)
    b"".join(result)
    result.close()
    return captured.get("ETag", '"none"')


def measure(app, environ: dict, bodies: list[bytes], n: int) -> tuple[float, int]:
    """Best of 3 runs of n requests: CPU microseconds per request, and the status answered."""
    best, status = float("inf"), 0
    for _ in range(3):
        started = time.process_time()
        for i in range(n):
            status = _call(app, environ, bodies[i % len(bodies)])
            if status >= 400:
                raise SystemExit(f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']} answered {status}")
        best = min(best, (time.process_time() - started) / n * 1e6)
    return best, status


def _postgres_schema(url: str) -> str:
    from sqlalchemy import create_engine, text

    from app.config import database_url
    from tests.databases import with_search_path

    engine = create_engine(database_url(url), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public"))
        conn.execute(text("CREATE SCHEMA IF NOT EXISTS bench_profile"))
    engine.dispose()
    return with_search_path(database_url(url), "bench_profile")


def build(workdir: Path):
    from app import create_app

    url = os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{workdir / 'profile.sqlite3'}"
    if url.startswith("postgresql"):
        url = _postgres_schema(url)
    seed(url, workdir / "instance", ROWS)
    app = create_app({**SERVER_ENV, "INSTANCE_PATH": str(workdir / "instance"), "DATABASE_URL": url})
    # The floor: every hook a request passes (request id, limiter, auth check, body guard, CORS,
    # security headers, access line) around a view that does nothing, not even validation.
    app.add_url_rule("/bench-floor", "bench_floor", lambda: app.response_class("[]", mimetype="application/json"))
    for handler in logging.getLogger("app").handlers:  # formatted and written as deployed, then discarded
        handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 - open for the process's life
    issuer = LocalIssuer(
        instance_path=str(workdir / "instance"),
        issuer=app.config["AUTH0_ISSUER"],
        audience=app.config["API_AUDIENCE"],
        admin_claim=app.config["ADMIN_CLAIM"],
    )
    return app, issuer.mint(email="bench@example.com", admin=True, ttl=3600)


def _figures_of(tree: Path, n: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "bench.profile", "--json", "-n", str(n)],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def compare(base: Path, n: int, rounds: int) -> None:
    """Before (another checkout, e.g. `git worktree add /tmp/base main`) and after, alternating; best of each."""
    here = Path(__file__).resolve().parent.parent
    best: dict[str, dict[str, float]] = {"before": {}, "after": {}}
    statuses = {}
    for _ in range(rounds):
        for side, tree in (("before", base), ("after", here)):
            for label, row in _figures_of(tree, n).items():
                best[side][label] = min(best[side].get(label, float("inf")), row["us"])
                statuses[side, label] = row["status"]
    print(f"{'request':36} {'before us':>10} {'after us':>10} {'after/before':>12}  status before -> after")
    for label, after in best["after"].items():
        before = best["before"].get(label)
        ratio = f"{after / before:12.2f}" if before else f"{'-':>12}"
        before_text = f"{before:10.1f}" if before else f"{'-':>10}"
        status = f"{statuses.get(('before', label), '-')} -> {statuses['after', label]}"
        print(f"{label:36} {before_text} {after:10.1f} {ratio}  {status}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=500, help="requests per timed run (default 500)")
    parser.add_argument("--profile", metavar="ROW", help="cProfile this row instead of timing every row")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--compare", metavar="DIR", type=Path, help="another checkout to compare with")
    parser.add_argument("--rounds", type=int, default=3, help="with --compare: alternations (default 3)")
    args = parser.parse_args()
    if args.compare:
        compare(args.compare, args.n, args.rounds)
        return
    with tempfile.TemporaryDirectory() as tmp:
        app, token = build(Path(tmp))
        table = rows(app, token)
        if args.profile:
            target, environ, bodies, _expected = table[args.profile]
            measure(target, environ, bodies, 50)  # warm caches first
            profiler = cProfile.Profile()
            profiler.enable()
            measure(target, environ, bodies, args.n)
            profiler.disable()
            pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(45)
            return
        figures = {}
        for label, (target, environ, bodies, expected) in table.items():
            measure(target, environ, bodies, 50)
            us, status = measure(target, environ, bodies, args.n)
            figures[label] = {"us": round(us, 1), "status": status, "expected": expected}
        if args.json:
            print(json.dumps(figures))
            return
        ceiling = figures["ceiling (bare Flask)"]["us"]
        print(f"{'request':36} {'us/request':>10} {'of ceiling':>10} {'status':>6}")
        for label, row in figures.items():
            mark = "" if row["status"] == row["expected"] else f" (expected {row['expected']})"
            print(f"{label:36} {row['us']:10.1f} {ceiling / row['us']:10.0%} {row['status']:>6}{mark}")


if __name__ == "__main__":
    main()
