"""Helpers for the Swagger UI console tests: `make run` in a copy of the project, the curl as shown, screenshots."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
from playwright.sync_api import Page

from tests.live import ROOT

# Where the tests leave a picture of each step (DMARKET_SCREENSHOTS=dir); none by default.
SCREENS = os.environ.get("DMARKET_SCREENSHOTS")
LOGGED_LINK = re.compile(r"to sign in, open (http://\S+/login\?code=\S+)")


def screenshot(page: Page, name: str, part: str | None = None) -> None:
    """The viewport, or one part of the page (a CSS selector), as a person sees it."""
    if SCREENS:
        Path(SCREENS).mkdir(parents=True, exist_ok=True)
        path = str(Path(SCREENS) / f"{name}.png")
        if part:
            page.locator(part).first.screenshot(path=path)
        else:
            page.screenshot(path=path)


def project_copy(tmp: Path) -> Path:
    """What `make run` needs, copied, with the virtualenv that runs the tests as its .venv."""
    copy = tmp / "project"
    copy.mkdir()
    for name in ("app", "migrations"):
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("Makefile", "wsgi.py", "requirements.txt"):
        shutil.copy2(ROOT / name, copy / name)
    (copy / ".venv").symlink_to(Path(sys.prefix))  # the virtualenv running the tests: nothing to install
    return copy


def environment(**extra: str) -> dict:
    """A newcomer's shell: no settings of the suite's, nothing the project reads but what is given."""
    suite = (
        "AUTH",
        "API_",
        "APP_ENV",
        "CLIENT_",
        "DATABASE_URL",
        "FLASK_",
        "LOCAL_SIGNIN",
        "LOG_",
        "PUBLIC_URL",
        "SECRET",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(suite)}
    env.pop("PORT", None)
    env.pop("HOST", None)
    return {**env, **extra}


class MakeRun:
    """`PORT=... make run` in a copy of the project; the log it prints is kept."""

    def __init__(self, project: Path, port: int):
        self.project, self.port = project, port
        self.log: list[str] = []
        self.process = subprocess.Popen(
            ["make", "--old-file=.venv/.runtime", "run", f"PORT={port}"],  # installed already: never pip
            cwd=project,
            env=environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # make, then flask: stopped together by their process group
        )

    def wait_for_link(self, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        os.set_blocking(self.process.stdout.fileno(), False)
        link = None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if line:
                self.log.append(line)
                link = link or (LOGGED_LINK.search(line).group(1) if LOGGED_LINK.search(line) else None)
            elif self.process.poll() is not None:
                raise RuntimeError(f"make run exited: {''.join(self.log)[-2000:]}")
            else:
                time.sleep(0.05)
            if link and self._answers():
                return link
        raise RuntimeError(f"make run did not serve in time: {''.join(self.log)[-2000:]}")

    def _answers(self) -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{self.port}/health", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def flask(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        """`.venv/bin/flask ARGS` in the project, as the README has a newcomer run it in another terminal."""
        return subprocess.run(
            [str(self.project / ".venv" / "bin" / "flask"), *args],
            cwd=self.project,
            env=environment(FLASK_APP="wsgi.py", **env),
            capture_output=True,
            text=True,
            timeout=60,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process.stdout.close()


def run_as_copied(command: str, tmp: Path) -> tuple[int, str]:
    """The curl command exactly as Swagger UI shows it, run by a shell; its status from a .curlrc beside it."""
    home = tmp / "curl-home"
    home.mkdir(exist_ok=True)
    (home / ".curlrc").write_text('-s\n-w "\\n%{http_code}"\n')
    done = subprocess.run(
        ["bash", "-c", command], env={**os.environ, "CURL_HOME": str(home)}, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    body, _, status = done.stdout.rpartition("\n")
    return int(status), body


def shown_curl(page: Page, operation: str) -> str:
    """The curl command Swagger UI shows under an executed operation."""
    return page.locator(f"#{operation} .curl-command .curl").inner_text()
