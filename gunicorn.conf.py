"""gunicorn settings, all from the environment: `gunicorn -c gunicorn.conf.py wsgi:app`."""

import math
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from gunicorn.glogging import Logger

from app.logs import RequestIdFilter, make_formatter


def usable_cpus(cgroup: str = "/sys/fs/cgroup", affinity: set | None = None) -> int:
    """CPUs this process may really use: its affinity, capped by a cgroup v2 or v1 CPU quota (rounded up).

    A container limited with `--cpus=0.5 --cpuset-cpus=0` still sees every host core in
    os.cpu_count(); sizing workers from that overloads the quota it is given.
    """
    if affinity is None:
        affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    cpus = max(1, len(affinity))
    quota = _cgroup_cpu_quota(Path(cgroup))
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return cpus


def _cgroup_cpu_quota(root: Path) -> float | None:
    """CPUs' worth of quota: cgroup v2 `cpu.max` ("50000 100000"), else v1 `cpu.cfs_quota_us`/`cpu.cfs_period_us`."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    for controller in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        try:
            quota = int((root / controller / "cpu.cfs_quota_us").read_text())
            period = int((root / controller / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return quota / period if quota > 0 and period > 0 else None
    return None


host = os.environ.get("HOST", "127.0.0.1")
bind = os.environ.get("GUNICORN_BIND", f"{host}:{os.environ.get('PORT', '5000')}")
workers = int(os.environ.get("WEB_CONCURRENCY") or usable_cpus() * 2 + 1)
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
# Docker (and Kubernetes) wait 10 s after SIGTERM before SIGKILL: finish or drop in-flight
# requests before that, so a stop exits 0 and says "Shutting down: Master".
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "8"))
keepalive = 5
# Recycle workers now and then so a slow leak can never grow without bound.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "10000"))
max_requests_jitter = max_requests // 10
# gunicorn's control socket sits at one path per user: several servers on a host would collide.
control_socket_disable = True
# X-Forwarded-* are read by the app alone (ProxyFix, TRUSTED_PROXIES hops deep). gunicorn's own
# handling would apply first, from any address it trusts, and without counting hops: e.g.
# `X-Forwarded-Ssl: on` from 127.0.0.1 would make the app believe it is on HTTPS.
forwarded_allow_ips = ""
secure_scheme_headers = {}

# The app writes the access log itself (one line per request, with its request id), so
# gunicorn's own would only repeat it; gunicorn's messages use the app's format.
accesslog = None


class AppLogger(Logger):
    """gunicorn's logger without its access log: with a logging config it would format every
    request's line (a tenth of a small request's time) only for no handler to write it."""

    def access(self, resp, req, environ, request_time) -> None:
        pass


logger_class = AppLogger
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": RequestIdFilter}},
    "formatters": {"app": {"()": make_formatter, "log_format": os.environ.get("LOG_FORMAT", "text").lower()}},
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "app",
            "filters": ["request_id"],
            "stream": "ext://sys.stderr",
        }
    },
    "root": {"handlers": ["stderr"], "level": "WARNING"},
    "loggers": {"gunicorn.error": {"handlers": ["stderr"], "level": "INFO", "propagate": False}},
}


def on_starting(server):
    """Metrics (when enabled) are kept per worker in PROMETHEUS_MULTIPROC_DIR: start it empty."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        Path(path).mkdir(parents=True, exist_ok=True)
        for stale in Path(path).glob("*.db"):
            stale.unlink()
    else:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="dmarket-metrics-")
        server._dmarket_metrics_tmp = os.environ["PROMETHEUS_MULTIPROC_DIR"]


def when_ready(server):
    """The image's nginx (boot.sh, FRONT_PROXY=nginx) starts once gunicorn listens: never a 502 at boot."""
    conf = os.environ.get("NGINX_CONF")
    if conf:
        subprocess.run(["nginx", "-e", "stderr", "-c", conf], check=True)
        server.log.info("nginx started in front (%s)", conf)


def child_exit(server, worker):
    """A dead worker's gauges (pool connections in use) must stop counting; its counters stay."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, os.environ["PROMETHEUS_MULTIPROC_DIR"])


def on_exit(server):
    tmp = getattr(server, "_dmarket_metrics_tmp", None)
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)


def post_worker_init(worker):
    """No `Server: gunicorn` banner: it tells a scanner what to try, and the client nothing. The
    errors gunicorn answers itself (400, 414, 431, a request cut by a worker's death: 500) in the
    API's JSON shape, not HTML."""
    from gunicorn import util
    from gunicorn.http import wsgi

    util.write_error = write_json_error

    if not getattr(wsgi.Response.default_headers, "without_server", False):
        default_headers = wsgi.Response.default_headers

        def without_server(self):
            return [line for line in default_headers(self) if not line.startswith("Server:")]

        without_server.without_server = True
        wsgi.Response.default_headers = without_server


# What gunicorn's own refusals say: a fixed sentence, never its message, which quotes the request
# (the request line, a header's name); gunicorn logs that message with the client's address.
ERROR_MESSAGES = {
    400: "The request could not be read.",
    403: "The request is forbidden.",
    414: "The request URI is too long.",
    417: "The expectation cannot be met.",
    431: "A request header is too large.",
    501: "The request's transfer coding is not supported.",
}


def write_json_error(sock, status_int, reason, mesg):
    """gunicorn.util.write_error, with the API's error body `{"code", "message"}`."""
    import json

    from gunicorn.util import write_nonblock

    from app.errors import code_for

    fallback = "An unexpected error occurred; it has been logged." if status_int >= 500 else f"{reason}."
    body = json.dumps({"code": code_for(status_int), "message": ERROR_MESSAGES.get(status_int, fallback)}).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    write_nonblock(sock, head.encode("latin1") + body)


def worker_abort(worker):
    """Name the cause: gunicorn itself only says, once the worker is gone, "Perhaps out of memory?"."""
    worker.log.error(
        "Worker (pid:%s) timed out: a request ran past GUNICORN_TIMEOUT (%ss); aborting it", worker.pid, timeout
    )
