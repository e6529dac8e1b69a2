"""`make bench`: seed, serve with gunicorn, drive each endpoint, print ratios, write bench/results/latest.json.

Settings (environment): BENCH_SIZES (default 1000,100000,1000000), BENCH_DURATION seconds per
endpoint (10), BENCH_CONNECTIONS (16), BENCH_WORKERS gunicorn workers (2), BENCH_DATABASE_URL
(also run on PostgreSQL, one schema per size).
"""

import json
import os
import platform
import secrets
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import requests
from flask import Flask
from sqlalchemy import create_engine, text

from app.auth.local_issuer import LocalIssuer
from app.config import DEFAULT_ADMIN_CLAIM, DEFAULT_LOCAL_AUDIENCE, DEFAULT_LOCAL_ISSUER, database_url
from app.services.paging import encode_cursor
from app.services.products import MAX_PAGE
from bench import load
from bench.seed import seed
from tests.databases import with_search_path  # the suite's way to give each database its own schema

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / ".data"
RESULTS = ROOT / "bench" / "results"
SIZES = [int(n) for n in os.environ.get("BENCH_SIZES", "1000,100000,1000000").split(",")]
DURATION = int(os.environ.get("BENCH_DURATION", "10"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "16"))
WORKERS = int(os.environ.get("BENCH_WORKERS", "2"))
# Seconds of the same load before each measured drive, not counted: a row measures the steady
# state, not the first reads of pages that no earlier row touched (whatever fails then is printed).
WARMUP = int(os.environ.get("BENCH_WARMUP", "1"))
PER_PAGE = 50
# Local tokens; limits far above what the load reaches (the limiter still runs on every request).
# Every row but one measures the work behind its answer: the per-process cache of list answers
# (LIST_CACHE_SIZE) is off, or each repeat of a query would cost one read of the change counter.
SERVER_ENV = {
    "AUTH_MODE": "local",
    "RATELIMIT_DEFAULT": "100000000 per minute",
    "RATELIMIT_WRITES": "100000000 per minute",
    "RATELIMIT_PER_ADDRESS": "100000000 per minute",
    "LIST_CACHE_SIZE": "0",
    "SECRET_KEY": secrets.token_urlsafe(32),  # the bench signs a deep cursor with it too
}
# The one row served as deployed (the list cache on, its default size), on the smallest database:
# the SPA's first page, read again and again while products do not change.
CACHED_ROW = "GET /products (list cache on)"
# The costliest search shapes an anonymous client could send (issue 11, item 4): each must cost a
# small multiple of the first page at any size. (Shorter terms, `q=am`, are a 422 before any query.)
SEARCH_SHAPES = {
    "GET /products?q= (all rows)": "q=in%20good%20condition",
    "GET /products?q= all, -name": "q=good%20condition&sort=-name",
    "GET /products?q= 3 chars -name": "q=ood&sort=-name",
    "GET /products?q= (no match)": "q=condition%20lamp",
    "GET /products?q= &user_id=": "q=in%20good%20condition&user_id=bench%7Cuser1",
    "GET /products?q= page 20": "q=lamp&page=20",
}
READS = [
    "GET /products",
    "GET /products deep page",
    "GET /products cursor deep",
    "GET /products?q=",
    "GET /products?q= (rare)",
    *SEARCH_SHAPES,
    "GET /products/<id>",
]
# Issue 14's targets: each row's share of the ceiling on the smallest database, and read scaling.
SHARE_TARGETS = {
    "GET /products": 0.35,
    CACHED_ROW: 0.35,
    "GET /products/<id>": 0.45,
    "GET /products (304)": 0.50,
    "GET /products/<id> (304)": 0.50,
    "PUT /products/<id>/update": 0.25,
    "POST /products/create": 0.20,
}
SCALING_TARGET = 3.0  # p50 at the largest size / p50 at the smallest, every read and search
RSS_TARGET_MB = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def gunicorn(app_path: str, env: dict):
    port = free_port()
    server_env = {
        **os.environ, **env, "HOST": "127.0.0.1", "PORT": str(port), "WEB_CONCURRENCY": str(WORKERS),
        "LOG_LEVEL": "INFO", "GUNICORN_MAX_REQUESTS": "0",
    }  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", app_path],
        cwd=ROOT, env=server_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                requests.get(f"{url}/health" if app_path == "wsgi:app" else f"{url}/ceiling", timeout=1)
                break
            except requests.RequestException:  # not up yet, or too busy starting to answer in time
                time.sleep(0.1)
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


def settle(url: str) -> None:
    """Wait until the workers answer /health quickly three times in a row, so one endpoint's backlog
    (a slow query still running after wrk stopped) is not billed to the next."""
    deadline, quick = time.monotonic() + 120, 0
    while quick < 3 and time.monotonic() < deadline:
        started = time.perf_counter()
        requests.get(f"{url}/health", timeout=30)
        quick = quick + 1 if time.perf_counter() - started < 0.05 else 0
        time.sleep(0.05)


def _worker_pids(master_pid: int) -> list[str]:
    return Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()


def worker_cpu_seconds(master_pid: int) -> float:
    """User + system CPU its workers have used so far (/proc): what the server spent, whoever else ran."""
    total = 0
    for pid in _worker_pids(master_pid):
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")


def drive_counting_cpu(target: load.Target, master_pid: int) -> tuple[load.Result, float]:
    """One row's load, and its workers' CPU microseconds per answered request."""
    before = worker_cpu_seconds(master_pid)
    result = load.drive(target, duration=DURATION, connections=CONNECTIONS)
    return result, (worker_cpu_seconds(master_pid) - before) * 1e6 / max(result.requests, 1)


def worker_rss_mb(master_pid: int) -> list[float]:
    sizes = []
    for pid in _worker_pids(master_pid):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                sizes.append(round(int(line.split()[1]) / 1024, 1))
    return sizes


def databases() -> list[tuple[str, callable]]:
    DATA.mkdir(parents=True, exist_ok=True)
    targets = [("sqlite", lambda n: f"sqlite:///{DATA / f'products-{n}.sqlite3'}")]
    pg = os.environ.get("BENCH_DATABASE_URL")
    if pg:
        base = database_url(pg)
        engine = create_engine(base, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public"))  # shared by the sizes' schemas
            for n in SIZES:
                conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS bench_{n}"))
        engine.dispose()
        targets.append(("postgresql", lambda n: with_search_path(base, f"bench_{n}")))
    return targets


def deep_cursor() -> str:
    """A cursor two pages from the end of the newest-first list (after id 101), as the servers sign it.

    A client walking there would hold this one; fetching it by page number stops at page 100.
    """
    signing = Flask(__name__)
    signing.config["SECRET_KEY"] = SERVER_ENV["SECRET_KEY"]
    with signing.app_context():
        return encode_cursor("-id", 2 * PER_PAGE + 1, 2 * PER_PAGE + 1)


def etag_of(url: str) -> str:
    response = requests.get(url, timeout=120)
    response.raise_for_status()
    return response.headers["ETag"]


def targets_for(url: str, n: int, token: str) -> dict[str, load.Target]:
    """Every row; the conditional ones come before the writes, which would change their tags."""
    auth = {"Authorization": f"Bearer {token}"}
    middle = n // 2
    targets = {
        "GET /products": load.Target("GET", f"{url}/products"),
        "GET /products?per_page=25 (bearer)": load.Target("GET", f"{url}/products?per_page=25", headers=auth),
        "GET /products deep page": load.Target(  # the deepest page a number reaches
            "GET", f"{url}/products?page={min(n // PER_PAGE - 1, MAX_PAGE)}&per_page={PER_PAGE}"
        ),
        "GET /products?q=": load.Target("GET", f"{url}/products?q=lamp"),  # in ~23% of the seeded rows
        "GET /products?q= (rare)": load.Target("GET", f"{url}/products?q=chair%201234"),  # ~10 rows in 1M
        **{label: load.Target("GET", f"{url}/products?{query}") for label, query in SEARCH_SHAPES.items()},
        "GET /products/<id>": load.Target("GET", f"{url}/products/{middle}"),
        "GET /products (304)": load.Target(
            "GET", f"{url}/products", headers={"If-None-Match": etag_of(f"{url}/products")}, expect=304
        ),
        "GET /products/<id> (304)": load.Target(
            "GET",
            f"{url}/products/{middle}",
            headers={"If-None-Match": etag_of(f"{url}/products/{middle}")},
            expect=304,
        ),
        "PUT /products/<id>/update": load.Target(
            "PUT", f"{url}/products/{middle}/update", {"quantity": 7, "price": "12.50"}, auth, vary="quantity"
        ),
        "POST /products/create": load.Target(
            "POST", f"{url}/products/create", {"name": "Bench lamp", "price": "19.99", "quantity": 1}, auth
        ),
    }
    cursor = load.Target("GET", f"{url}/products?cursor={deep_cursor()}&per_page={PER_PAGE}")
    labels = list(targets)
    labels.insert(labels.index("GET /products deep page") + 1, "GET /products cursor deep")
    return {label: cursor if label == "GET /products cursor deep" else targets[label] for label in labels}


def run() -> dict:
    issuer = LocalIssuer(
        instance_path=str(ROOT / "instance"), issuer=DEFAULT_LOCAL_ISSUER,
        audience=DEFAULT_LOCAL_AUDIENCE, admin_claim=DEFAULT_ADMIN_CLAIM,
    )  # fmt: skip
    token = issuer.mint(email="bench@example.com", admin=True, ttl=6 * 3600)
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "generator": load.generator_name(),
        "duration_s": DURATION, "connections": CONNECTIONS, "workers": WORKERS,
        "databases": {},
    }  # fmt: skip
    print(f"# DMarket API benchmark, {report['date']}")
    print(f"# {report['machine']}; load: {report['generator']}")
    print(f"# {DURATION}s per endpoint, {CONNECTIONS} connections, gunicorn {WORKERS} sync workers (gunicorn.conf.py)")
    print("# Each endpoint runs right after the ceiling, on every size back to back: a ratio is")
    print("# made of figures seconds apart, so the host's drift over the run cancels out.")
    with gunicorn("bench.ceiling:app", {}) as (ceiling_url, ceiling_pid):
        ceiling = load.Target("GET", f"{ceiling_url}/ceiling")
        for name, url_for_size in databases():
            report["databases"][name] = _run_database(name, url_for_size, (ceiling, ceiling_pid), token)
        report["ceiling_worker_rss_mb"] = worker_rss_mb(ceiling_pid)
    return report


def _run_database(name: str, url_for_size, ceiling: tuple[load.Target, int], token: str) -> dict:
    print()
    sizes = {}
    for n in SIZES:
        seconds = seed(url_for_size(n), DATA / "instance", n)
        sizes[str(n)] = {"seed_seconds": seconds, "endpoints": {}, "ceiling": {}}
        print(f"{name}, {n:,} products: " + ("cached" if seconds is None else f"seeded in {seconds:.1f}s"))
    with ExitStack() as stack:
        servers = {
            n: stack.enter_context(gunicorn("wsgi:app", {**SERVER_ENV, "DATABASE_URL": url_for_size(n)})) for n in SIZES
        }
        targets = {n: targets_for(url, n, token) for n, (url, _pid) in servers.items()}
        deployed = {**SERVER_ENV, "DATABASE_URL": url_for_size(SIZES[0]), "LIST_CACHE_SIZE": ""}
        cached_url, cached_pid = stack.enter_context(gunicorn("wsgi:app", deployed))
        targets[SIZES[0]] = _with_cached_row(targets[SIZES[0]], load.Target("GET", f"{cached_url}/products"))
        print(f"\n## {name}")
        print(
            f"{'endpoint':36} {'rows':>9} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'of ceiling':>10}"
            f" {'CPU us':>7} {'CPU share':>9}"
        )
        for label in targets[SIZES[0]]:
            for url, _pid in servers.values():  # the last endpoint's backlog would slow the ceiling too
                settle(url)
            base, base_cpu = drive_counting_cpu(*ceiling)
            print(f"{'ceiling (bare Flask)':36} {'-':>9} {_figures(base)} {'':10} {base_cpu:7.0f}")
            for n in SIZES:
                if label not in targets[n]:
                    continue
                warm = load.drive(targets[n][label], duration=WARMUP, connections=CONNECTIONS) if WARMUP else None
                settle(servers[n][0])
                pid = cached_pid if label == CACHED_ROW else servers[n][1]
                result, cpu = drive_counting_cpu(targets[n][label], pid)
                share = result.requests_per_second / base.requests_per_second
                sizes[str(n)]["endpoints"][label] = {
                    **result.__dict__,
                    "of_ceiling": round(share, 3),
                    "worker_cpu_us": round(cpu, 1),
                    "cpu_share": round(base_cpu / cpu, 3),
                    "warmup_failures": warm.failures if warm else {},
                }
                sizes[str(n)]["ceiling"][label] = {**base.__dict__, "worker_cpu_us": round(base_cpu, 1)}
                print(f"{label:36} {n:9,} {_figures(result)} {share:10.0%} {cpu:7.0f} {base_cpu / cpu:9.0%}")
                if result.failures:
                    print(f"  failed answers by status (as wrk's script saw them): {result.failures}")
                if warm and warm.failures:
                    print(f"  failed answers during the {WARMUP}s warm-up (not counted): {warm.failures}")
        for n, (_url, pid) in servers.items():
            rss = sizes[str(n)]["worker_rss_mb"] = worker_rss_mb(pid)
            print(f"worker RSS after the run, {n:,} rows: {', '.join(f'{mb} MB' for mb in rss)}")
    for n in SIZES:
        _drop_created_rows(url_for_size(n), n)
    _print_scaling(name, sizes)
    _print_targets(name, sizes)
    return sizes


def _with_cached_row(targets: dict, cached: load.Target) -> dict:
    """The smallest size's rows, with the deployed configuration's first page right after the uncached one."""
    rows = {}
    for label, target in targets.items():
        rows[label] = target
        if label == "GET /products":
            rows[CACHED_ROW] = cached
    return rows


def _figures(result: load.Result) -> str:
    return f"{result.requests_per_second:9,.0f} {result.p50_ms:8.2f} {result.p99_ms:8.2f} {result.errors:7d}"


def _drop_created_rows(db_url: str, n: int) -> None:
    """POST runs add rows; remove them so the next run finds the database as seeded."""
    engine = create_engine(database_url(db_url))
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM products WHERE id > :n"), {"n": n})
    engine.dispose()


def _print_scaling(name: str, sizes: dict) -> None:
    smallest, largest = str(min(SIZES)), str(max(SIZES))
    if smallest == largest:
        return
    print(f"\n## {name}: p50 at {int(largest):,} rows / p50 at {int(smallest):,} rows (target <= {SCALING_TARGET})")
    for label in READS:
        small = sizes[smallest]["endpoints"].get(label)
        big = sizes[largest]["endpoints"].get(label)
        if small and big:
            ratio = big["p50_ms"] / small["p50_ms"]
            sizes.setdefault("p50_ratio", {})[label] = round(ratio, 2)
            print(f"{label:36} {ratio:6.2f}x   ({small['p50_ms']:.2f} ms -> {big['p50_ms']:.2f} ms)")


def _verdict(met: bool) -> str:
    return "MET" if met else "MISSED"


def _print_targets(name: str, sizes: dict) -> None:
    """Issue 14's targets next to this run's figures, each MET or MISSED."""
    smallest = sizes[str(min(SIZES))]
    print(f"\n## {name}: targets (share of the ceiling at {min(SIZES):,} rows; scaling; errors; memory)")
    print(f"{'':38} {'this run':>10} {'target':>8}")
    verdicts = sizes.setdefault("targets", {})
    for label, target in SHARE_TARGETS.items():
        row = smallest["endpoints"].get(label)
        if row is None:
            continue
        share = row["of_ceiling"]
        verdicts[label] = _verdict(share >= target)
        print(f"{label:38} {share:10.0%} {'>=':>3}{target:4.0%}  {verdicts[label]}")
    for label, ratio in sizes.get("p50_ratio", {}).items():
        key = f"{label} p50 scaling"
        verdicts[key] = _verdict(ratio <= SCALING_TARGET)
        print(f"{key:38} {ratio:9.2f}x {'<=':>3}{SCALING_TARGET:3.0f}x  {verdicts[key]}")
    errors = sum(row["errors"] for n in SIZES for row in sizes[str(n)]["endpoints"].values())
    verdicts["errors"] = _verdict(errors == 0)
    print(f"{'errors, every row and size':38} {errors:10d} {'=':>3}{0:4d}  {verdicts['errors']}")
    rss = max(mb for n in SIZES for mb in sizes[str(n)]["worker_rss_mb"])
    verdicts["worker RSS"] = _verdict(rss < RSS_TARGET_MB)
    print(f"{'largest worker RSS (MB)':38} {rss:10.1f} {'<':>3}{RSS_TARGET_MB:4d}  {verdicts['worker RSS']}")


def main() -> None:
    # A stopped run (SIGTERM) still unwinds, so the gunicorn servers it started are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    report = run()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=2))
    print(f"\nwrote {RESULTS / 'latest.json'}")


if __name__ == "__main__":
    main()
