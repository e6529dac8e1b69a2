"""Clients generated from the live document, as client developers make them (docs/api.md).

From /openapi/openapi.json served by a live server: the Python client (openapi-python-client,
checked by `mypy --strict`) and the TypeScript types and client (openapi-typescript +
openapi-fetch, checked by `tsc --strict`) each run one flow (tests/clients/flow.py, flow.mts)
against that server; Redocly's recommended rules lint the same document, and ajv (JSON Schema
2020-12, strict mode: tests/clients/ajv.mjs) compiles every schema in it and validates its examples,
every cent price and the admin target's variants. The tools are pinned in
tests/clients (requirements.txt, package-lock.json) and installed there on first use (git-ignored).
They need no database of their own: these tests run in the SQLite pass only.
"""

import copy
import filecmp
import json
import os
import shutil
import subprocess
import sys
import threading
import venv
from pathlib import Path

import pytest
import requests
from werkzeug.serving import make_server

from tests.conftest import service_missing
from tests.databases import postgres_base_url
from tests.documents import DOCUMENTS
from tests.factories import make_user
from tests.issuer import ADMIN_CLAIM

CLIENTS = Path(__file__).parent / "clients"
BUILD = CLIENTS / "build"
TIMEOUT = 300

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        postgres_base_url() is not None, reason="generated clients need no database: run in the SQLite pass only"
    ),
]


def run(*args, env: dict | None = None, cwd: Path = CLIENTS) -> str:
    """Run a tool; its output is the failure message when it fails."""
    result = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(map(str, args))}:\n{output[-6000:]}"
    return output


@pytest.fixture(scope="session")
def python_tools() -> Path:
    """tests/clients/.venv with requirements.txt installed, made again only when that file changed."""
    root, stamp = CLIENTS / ".venv", CLIENTS / ".venv" / "requirements.txt"
    if not (stamp.exists() and filecmp.cmp(stamp, CLIENTS / "requirements.txt", shallow=False)):
        shutil.rmtree(root, ignore_errors=True)
        venv.create(root, with_pip=True)
        run(root / "bin" / "python", "-m", "pip", "install", "--quiet", "-r", CLIENTS / "requirements.txt")
        shutil.copyfile(CLIENTS / "requirements.txt", stamp)
    return root / "bin"


@pytest.fixture(scope="session")
def node_tools() -> Path:
    """tests/clients/node_modules from package-lock.json (`npm ci`), again only when the lock file changed."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        service_missing("node and npm are not installed: the TypeScript client, Redocly and ajv checks need them")
    stamp = CLIENTS / "node_modules" / ".dmarket-lock.json"
    if not (stamp.exists() and filecmp.cmp(stamp, CLIENTS / "package-lock.json", shallow=False)):
        run("npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
        shutil.copyfile(CLIENTS / "package-lock.json", stamp)
    return CLIENTS / "node_modules" / ".bin"


@pytest.fixture
def live(make_app, issuer, tmp_path):
    """The API over real HTTP, its document as served, and tokens of a user and an admin."""
    app = make_app()
    with app.app_context():
        make_user("auth0|root", email="root@example.com", is_admin=True)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    document = tmp_path / "openapi.json"
    document.write_bytes(requests.get(f"{url}/openapi/openapi.json", timeout=10).content)
    user = issuer.token("auth0|alice", email="alice@example.com", name="Alice")
    admin = issuer.token("auth0|root", email="root@example.com", **{ADMIN_CLAIM: {"is_admin": True}})
    yield url, document, user, admin
    server.shutdown()
    thread.join()


def test_the_python_client_compiles_strictly_and_runs_the_flow(python_tools, live, tmp_path):
    """Generated outside the project, as a client developer does (no ruff settings of ours apply)."""
    url, document, user, admin = live
    package = tmp_path / "dmarket_client"
    path = {"PATH": f"{python_tools}{os.pathsep}{os.environ['PATH']}"}  # the generator formats with its ruff
    run(
        python_tools / "openapi-python-client", "generate", "--path", document, "--meta", "none",
        "--config", CLIENTS / "openapi-python-client.yaml", "--output-path", package, env=path, cwd=tmp_path,
    )  # fmt: skip
    assert {p.stem for p in (package / "api" / "products").glob("*.py")} >= {"create_product", "update_product"}
    mypy = (python_tools / "mypy", "--strict", "--explicit-package-bases", "--cache-dir", tmp_path / ".mypy_cache")
    assert "Success" in run(*mypy, "flow.py", package, env={"MYPYPATH": tmp_path})  # the client and the flow
    output = run(python_tools / "python", "flow.py", url, user, admin, env={"PYTHONPATH": tmp_path})
    assert output.strip().endswith("python flow: ok"), output


def test_the_typescript_client_compiles_strictly_and_runs_the_flow(node_tools, live):
    url, document, user, admin = live
    BUILD.mkdir(exist_ok=True)
    run(node_tools / "openapi-typescript", document, "-o", BUILD / "schema.d.ts")
    run(node_tools / "tsc", "-p", "tsconfig.json")  # tsconfig.json: "strict": true
    output = run("node", BUILD / "js" / "flow.mjs", url, user, admin)
    assert output.strip().endswith("typescript flow: ok"), output


@pytest.mark.parametrize("mode", DOCUMENTS)
def test_redocly_recommended_rules_find_no_error(node_tools, mode, tmp_path):
    document = tmp_path / "openapi.json"
    document.write_text(json.dumps(DOCUMENTS[mode]))
    quiet = {"NO_COLOR": "1", "REDOCLY_TELEMETRY": "off", "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true"}
    output = run(node_tools / "redocly", "lint", document, "--format=summary", env=quiet)  # exits 1 on an error
    assert "Your API description is valid" in output, output


def test_the_validators_command_line_loads_the_served_file(live):
    """openapi-spec-validator's command line reads the file as YAML: surrogate escapes stopped it."""
    _, document, _, _ = live
    assert run(sys.executable, "-m", "openapi_spec_validator", document).strip().endswith(": OK")


def ajv(document: Path) -> tuple[int, dict]:
    """tests/clients/ajv.mjs on a document: its exit code and its summary (schemas, examples, prices, failures)."""
    result = subprocess.run(
        ["node", CLIENTS / "ajv.mjs", document], cwd=CLIENTS, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert result.stdout.startswith("{"), result.stderr[-6000:]
    return result.returncode, json.loads(result.stdout)


@pytest.mark.parametrize("mode", DOCUMENTS)
def test_ajv_compiles_every_schema_strictly_and_accepts_every_cent_price(node_tools, mode, tmp_path):
    document = tmp_path / "openapi.json"
    document.write_text(json.dumps(DOCUMENTS[mode]))
    returncode, summary = ajv(document)
    assert summary["failures"] == [] and returncode == 0, json.dumps(summary["failures"], indent=1)[:6000]
    assert summary["schemas"] >= 100 and summary["examples"] >= 5
    assert {form: price["rejected"] for form, price in summary["prices"].items()} == {
        f"{body} {form}": 0 for body in ("ProductIn", "ProductUpdate") for form in ("number", "fixed", "shortest")
    }


def test_ajv_takes_a_product_with_a_user_id_as_the_server_does(node_tools, live):
    """The served document: ajv accepts the ProductIn example plus `user_id`; the server ignores that field."""
    url, document, user, _ = live
    returncode, summary = ajv(document)
    assert summary["failures"] == [] and returncode == 0, json.dumps(summary["failures"], indent=1)[:6000]
    body = {**DOCUMENTS["auth0"]["components"]["schemas"]["ProductIn"]["example"], "user_id": "auth0|mallory"}
    response = requests.post(f"{url}/products", json=body, headers={"Authorization": f"Bearer {user}"}, timeout=10)
    assert response.status_code == 201 and response.json()["user_id"] == "auth0|alice", response.text


def test_ajv_reports_the_cent_prices_a_float_multiple_of_refuses(node_tools, tmp_path):
    """The document as it was before issue 24 (`multipleOf: 0.01`), plus a keyword strict mode must refuse."""
    spec = copy.deepcopy(DOCUMENTS["auth0"])
    for body in ("ProductIn", "ProductUpdate"):
        spec["components"]["schemas"][body]["properties"]["price"]["anyOf"][0]["multipleOf"] = 0.01
    spec["components"]["schemas"]["ErrorOut"]["maxlength"] = 64  # misspelt: ajv ignores it outside strict mode
    document = tmp_path / "openapi.json"
    document.write_text(json.dumps(spec))
    returncode, summary = ajv(document)
    assert returncode == 1
    rejected = {(f["pointer"], f["rejected"], tuple(f["first"][:1])) for f in summary["failures"] if "rejected" in f}
    assert rejected == {
        (f"/components/schemas/{body}/properties/price", 11_426, (0.07,)) for body in ("ProductIn", "ProductUpdate")
    }
    misspelt = {"pointer": "/components/schemas/ErrorOut", "error": 'strict mode: unknown keyword: "maxlength"'}
    assert misspelt in summary["failures"]
