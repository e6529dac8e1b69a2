"""The app served as the image serves it: `boot.sh` with FRONT_PROXY=nginx (Debian's nginx in front,
gunicorn.conf.py's sync workers behind it on a unix socket), on loopback; and a redis-server to pause."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
import requests

from tests.conftest import app_settings
from tests.live import ROOT, free_port, terminate


def worker_rss_mb(master_pid: int) -> list[float]:
    """Resident memory of each gunicorn worker (the master's children), in MB."""
    sizes = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == master_pid:
                rss_pages = int((stat.parent / "statm").read_text().split()[1])
                sizes.append(rss_pages * os.sysconf("SC_PAGE_SIZE") / 2**20)
        except (OSError, IndexError, ValueError):
            continue
    return sizes


class ShippedServer:
    """`./boot.sh` with FRONT_PROXY=nginx, as the image's CMD runs it; stopped by PID (gunicorn, then nginx)."""

    def __init__(self, env: dict, tmp: Path, workers: int | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # nginx's workers run as `nobody` when the tests run as root: they must reach the socket.
        self.tmp = Path(tempfile.mkdtemp(prefix="dmarket-abuse-"))
        self.tmp.chmod(0o755)
        self.run_dir = self.tmp / "dmarket-nginx"
        self.log_path = tmp / "server.log"
        self.env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}:/usr/sbin",
            "FLASK_APP": "wsgi.py",
            "FRONT_PROXY": "nginx",
            "TMPDIR": str(self.tmp),
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "PUBLIC_URL": self.url,
            "GUNICORN_GRACEFUL_TIMEOUT": "3",
            **env,
        }
        self.env.pop("WEB_CONCURRENCY", None)  # as shipped: 2 x usable CPUs + 1, unless told
        if workers:
            self.env["WEB_CONCURRENCY"] = str(workers)
        self.process: subprocess.Popen | None = None

    def start(self) -> "ShippedServer":
        self.log = open(self.log_path, "w")  # noqa: SIM115  (closed in stop)
        self.process = subprocess.Popen(["sh", "boot.sh"], cwd=ROOT, env=self.env, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"boot.sh exited: {self.logs()[-2000:]}")
            try:
                if requests.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the server did not start: {self.logs()[-2000:]}")

    def logs(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text()

    def workers(self) -> list[float]:
        return worker_rss_mb(self.process.pid)

    def stop(self) -> None:
        terminate(self.process)
        pid_file = self.run_dir / "nginx.pid"
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGQUIT)
            for _ in range(50):
                if not pid_file.exists():
                    break
                time.sleep(0.1)
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


class PrivateRedis:
    """A redis-server of the test's own on a free port, so pausing it touches nobody else's."""

    def __init__(self):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_timeout=1)
        for _ in range(50):
            try:
                client.ping()
                return
            except redis.RedisError:
                time.sleep(0.1)
        raise RuntimeError("redis-server did not start")

    def keys(self) -> list:
        return redis.Redis(port=self.port, socket_timeout=1).keys("*")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGCONT)
        self.process.terminate()
        self.process.wait(timeout=10)


def shipped_env(issuer, tmp: Path, **overrides) -> dict:
    return {**app_settings(issuer, tmp, f"sqlite:///{tmp / 'abuse.sqlite3'}"), **overrides}
