"""Real gunicorn servers on 127.0.0.1 for tests that need several workers or instances."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """`gunicorn -c gunicorn.conf.py wsgi:app` with the given environment; started and stopped by the test."""

    def __init__(self, env: dict, workers: int = 2, port: int | None = None, extra_args: tuple = ()):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "LOG_LEVEL": "WARNING",
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "PUBLIC_URL": self.url,  # absolute URLs (sign-in callback, logout return) point back here
            "WEB_CONCURRENCY": str(workers),
            "GUNICORN_GRACEFUL_TIMEOUT": "5",
            **{k: str(v) for k, v in env.items()},
        }
        self.args = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", *extra_args, "wsgi:app"]
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> "LiveServer":
        self.process = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited early: {self.process.stderr.read()[-2000:]}")
            try:
                requests.get(f"{self.url}/openapi/openapi.json", timeout=1)
                return self
            except (requests.ConnectionError, requests.Timeout):  # not up yet, or a busy machine
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("gunicorn did not start in time")

    def stop(self) -> None:
        terminate(self.process)
        if self.process and self.process.stderr:
            self.process.stderr.close()

    def __enter__(self) -> "LiveServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def terminate(process: subprocess.Popen | None, timeout: float = 15) -> None:
    """SIGTERM (gunicorn's graceful stop), then SIGKILL if it is still running after `timeout`."""
    if process and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
