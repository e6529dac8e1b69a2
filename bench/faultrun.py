"""Issue 15's fault run: keyed creates through a database restart; counts what was lost, doubled or refused.

    .venv/bin/python -m bench.faultrun [--runs 3] [--restart-cmd "pg_ctlcluster 15 main restart"]

gunicorn (gunicorn.conf.py, 2 workers, local tokens) serves a fresh schema of the PostgreSQL
database at FAULTRUN_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test). Eight
writer threads create uniquely named products for 40 s, each with its own Idempotency-Key,
retrying every non-201 with the same key (after 0.1 s, not the 5 s Retry-After: more retries,
more chances to double) until it gets 201. At t = 12 s the database "restarts": by default
every connection of this run's server is terminated (pg_terminate_backend, by its
application_name) again and again for 3 s, which touches no other user of the cluster;
`--restart-cmd` runs a real restart instead. `--lose-commits N` also routes the server through
a relay that loses the answers to N COMMITs during the fault (tests/faultproxy.py): the
in-doubt commit, which killing connections only rarely hits. Then the database is compared with the answers:

- lost: acknowledged (201) but not stored; stored twice: one intended create, two rows;
- unacknowledged: stored although its writer never got a 201 (0 when every writer retries to 201);
- other: any answer but 201 and a JSON 503 `database_unavailable`; raw 500: gunicorn's own
  "Error handling request" (an exception that escaped the app).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import requests
from sqlalchemy import create_engine, text

from app.auth.local_issuer import LocalIssuer
from app.config import DEFAULT_ADMIN_CLAIM, DEFAULT_LOCAL_AUDIENCE, DEFAULT_LOCAL_ISSUER, database_url
from bench.seed import app_for
from tests.databases import with_search_path
from tests.faultproxy import CommitDropper
from tests.live import free_port

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = {"description": "fault run", "price": "19.99", "quantity": 1}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--duration", type=float, default=40)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--fault-at", type=float, default=12)
    parser.add_argument("--kill-for", type=float, default=3, help="seconds of repeated pg_terminate_backend")
    parser.add_argument("--restart-cmd", help="a shell command that restarts the database (instead of killing)")
    parser.add_argument(
        "--lose-commits", type=int, default=0,
        help="also lose the answers to this many COMMITs during the fault (in-doubt commits, via a relay)",
    )  # fmt: skip
    return parser.parse_args()


@contextmanager
def schema(base_url: str):
    name = f"faultrun_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)  # outlives a restart
    with admin.connect() as conn:
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public"))
        conn.execute(text(f'CREATE SCHEMA "{name}"'))
    try:
        yield name, with_search_path(base_url, name)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        admin.dispose()


@contextmanager
def gunicorn(env: dict, workers: int, log_path: Path):
    port = free_port()
    server_env = {
        **os.environ, **env, "HOST": "127.0.0.1", "PORT": str(port), "WEB_CONCURRENCY": str(workers),
        "LOG_LEVEL": "WARNING", "GUNICORN_GRACEFUL_TIMEOUT": "5",
    }  # fmt: skip
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
            cwd=ROOT, env=server_env, stdout=log, stderr=log,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    requests.get(f"{url}/health", timeout=5)
                    break
                except requests.RequestException:
                    time.sleep(0.1)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=30)


def kill_connections(base_url: str, application_name: str, seconds: float) -> int:
    """What a restart does to open connections, again and again, to this run's server only."""
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)  # outlives a restart
    killed, until = 0, time.monotonic() + seconds
    with admin.connect() as conn:
        while time.monotonic() < until:
            killed += conn.execute(
                text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = :name"),
                {"name": application_name},
            ).scalar()
            time.sleep(0.05)
    admin.dispose()
    return killed


def lose_commits(relay, count: int, seconds: float) -> None:
    for _ in range(count):
        relay.drop_commits(1)
        time.sleep(seconds / count)


def one_run(args: argparse.Namespace, base_url: str, token: str) -> dict:
    run_id = uuid.uuid4().hex[:8]
    application_name = f"dmarket-faultrun-{run_id}"
    with schema(base_url) as (_name, url), tempfile.TemporaryDirectory(prefix="faultrun-") as tmp:
        app_for(url, Path(tmp))  # migrates the schema
        relay, served = None, url
        if args.lose_commits:
            real = urlsplit(url)
            relay = CommitDropper(real.hostname, real.port or 5432).start()
            served = urlunsplit(real._replace(netloc=f"{real.username}@127.0.0.1:{relay.port}"))
        env = {
            "AUTH_MODE": "local",
            "DATABASE_URL": served,
            "DB_APPLICATION_NAME": application_name,
            "RATELIMIT_DEFAULT": "100000000 per minute",
            "RATELIMIT_WRITES": "100000000 per minute",
            "RATELIMIT_PER_ADDRESS": "100000000 per minute",
        }
        log_path = Path(tmp) / "gunicorn.log"
        with gunicorn(env, args.workers, log_path) as server:
            result = drive(args, base_url, server, token, application_name, relay)
        if relay is not None:
            relay.cut()
        result["raw 500"] = log_path.read_text().count("Error handling request")
        engine = create_engine(url, pool_pre_ping=True)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, name FROM products WHERE name LIKE :p"), {"p": f"{run_id}-%"}).all()
        engine.dispose()
    return tally(result, rows)


def drive(args, base_url: str, url: str, token: str, application_name: str, relay) -> dict:
    auth = {"Authorization": f"Bearer {token}"}
    requests.get(f"{url}/me", headers=auth, timeout=10).raise_for_status()
    prefix = application_name.rsplit("-", 1)[-1]
    statuses: Counter = Counter()
    acknowledged: dict[str, int] = {}
    replays = []
    deadline = time.monotonic() + args.duration
    lock = threading.Lock()

    def writer(n: int) -> None:
        i = 0
        while time.monotonic() < deadline:
            name, key, i = f"{prefix}-w{n}-{i}", uuid.uuid4().hex, i + 1
            while True:  # the same key until the create is acknowledged
                try:
                    response = requests.post(
                        f"{url}/products/create", json={**PRODUCT, "name": name},
                        headers={**auth, "Idempotency-Key": key}, timeout=30,
                    )  # fmt: skip
                except requests.RequestException:
                    with lock:
                        statuses["connection error"] += 1
                    time.sleep(0.1)
                    continue
                with lock:
                    statuses[_kind(response)] += 1
                if response.status_code == 201:
                    with lock:
                        acknowledged[name] = response.json()["id"]
                        if response.headers.get("Idempotent-Replayed") == "true":
                            replays.append(name)
                    break
                time.sleep(0.1)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(args.writers)]
    for thread in threads:
        thread.start()
    time.sleep(args.fault_at)
    if relay is not None:
        threading.Thread(target=lose_commits, args=(relay, args.lose_commits, args.kill_for), daemon=True).start()
    if args.restart_cmd:
        killed = None
        subprocess.run(args.restart_cmd, shell=True, check=True)
    else:
        killed = kill_connections(base_url, application_name, args.kill_for)
    for thread in threads:
        thread.join()
    answers_after = requests.post(f"{url}/products/create", json={**PRODUCT, "name": "after"}, headers=auth, timeout=30)
    return {
        "statuses": statuses,
        "acknowledged": acknowledged,
        "replays": len(replays),
        "connections killed": killed,
        "answers after": answers_after.status_code,
    }


def _kind(response: requests.Response) -> str:
    if response.status_code == 201:
        return "201"
    try:
        code = response.json().get("code")
    except ValueError:
        code = None
    if response.status_code == 503 and code == "database_unavailable" and response.headers.get("Retry-After"):
        return "503"
    return f"other: {response.status_code} {code or response.headers.get('Content-Type')}"


def tally(result: dict, rows) -> dict:
    stored = Counter(name for _id, name in rows)
    acknowledged = result["acknowledged"]
    statuses = result["statuses"]
    return {
        "201": statuses["201"],
        "replayed": result["replays"],
        "503": statuses["503"],
        "other": sum(n for kind, n in statuses.items() if kind not in ("201", "503")),
        "other kinds": {kind: n for kind, n in statuses.items() if kind not in ("201", "503")},
        "creates": len(acknowledged),
        "lost": sum(1 for name, pid in acknowledged.items() if stored[name] == 0),
        "stored twice": sum(1 for n in stored.values() if n > 1),
        "unacknowledged": sum(1 for name in stored if name not in acknowledged),
        "raw 500": result["raw 500"],
        "connections killed": result["connections killed"],
        "answers after": result["answers after"],
    }


COLUMNS = ["201", "replayed", "503", "other", "creates", "lost", "stored twice", "unacknowledged", "raw 500"]


def main() -> None:
    args = parse_args()
    base_url = database_url(os.environ.get("FAULTRUN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    issuer = LocalIssuer(
        instance_path=str(ROOT / "instance"), issuer=DEFAULT_LOCAL_ISSUER,
        audience=DEFAULT_LOCAL_AUDIENCE, admin_claim=DEFAULT_ADMIN_CLAIM,
    )  # fmt: skip
    token = issuer.mint(email="faultrun@example.com", ttl=3600)
    fault = args.restart_cmd or f"pg_terminate_backend every 50 ms for {args.kill_for:g} s"
    print(f"# {args.writers} writers, {args.duration:g} s, {args.workers} workers; at t = {args.fault_at:g} s: {fault}")
    print("| run | " + " | ".join(COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    failed = False
    for run in range(1, args.runs + 1):
        row = one_run(args, base_url, token)
        print(f"| {run} | " + " | ".join(f"{row[c]:,}" for c in COLUMNS) + " |", flush=True)
        if row["other kinds"]:
            print(f"#   other: {row['other kinds']}")
        print(f"#   connections killed: {row['connections killed']}; a create after the run: {row['answers after']}")
        failed |= any(row[c] for c in ("other", "lost", "stored twice", "unacknowledged", "raw 500"))
        failed |= row["answers after"] != 201
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
