"""How operators run the API: the Dockerfile's rules, gunicorn's settings, and the container's start.

No Docker engine runs here, so the image is checked by reading its Dockerfile and by
running the same steps outside Docker: the files it copies, its environment, its boot.sh.
"""

import os
import runpy
import shlex
import shutil
import subprocess
import sys
import time

import pytest
import requests

from app.auth.local_issuer import LocalIssuer
from app.config import DEFAULT_ADMIN_CLAIM, DEFAULT_LOCAL_AUDIENCE, DEFAULT_LOCAL_ISSUER
from tests.factories import bearer
from tests.live import ROOT, free_port


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
        assert conf["workers"] == 2 * os.cpu_count() + 1
        assert conf["graceful_timeout"] > 0 and conf["accesslog"] is None

    def test_port_and_concurrency_from_the_environment(self, monkeypatch):
        conf = self.settings(monkeypatch, PORT="8080", HOST="0.0.0.0", WEB_CONCURRENCY="3")
        assert conf["bind"] == "0.0.0.0:8080"
        assert conf["workers"] == 3


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
    env["PATH"] = f"{os.path.dirname(sys.executable)}:{env['PATH']}"
    process = subprocess.Popen(["./boot.sh"], cwd=image, env=env, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                health = requests.get(f"{url}/health", timeout=2)
                break
            except requests.ConnectionError:
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
