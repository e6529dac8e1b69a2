"""Drive one endpoint for a fixed time with fixed connections: wrk when installed, else a Python generator."""

import http.client
import json
import random
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Result:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int
    # Failed answers by status ("socket" for connection errors and timeouts), to say what went wrong.
    failures: dict = field(default_factory=dict)


@dataclass
class Target:
    method: str
    url: str
    body: dict | None = None
    headers: dict | None = None
    # An integer field of `body` given a fresh random value per request, so an update really
    # writes (the API commits nothing when a PUT changes nothing).
    vary: str | None = None
    # The one status every answer must have (e.g. 304 for a conditional read); any other counts
    # as an error. None: any 2xx or 3xx.
    expect: int | None = None


def generator_name() -> str:
    return "wrk" if shutil.which("wrk") else "python (threads + http.client; wrk not found)"


def drive(target: Target, *, duration: int, connections: int) -> Result:
    if shutil.which("wrk"):
        return _wrk(target, duration, connections)
    return _python(target, duration, connections)


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(number) * _UNITS[unit]


def _lua(target: Target) -> str:
    lines = [f'wrk.method = "{target.method}"']
    if target.body is not None:
        lines.append(f"wrk.body = [[{json.dumps(target.body)}]]")
        lines.append('wrk.headers["Content-Type"] = "application/json"')
    for name, value in (target.headers or {}).items():
        lines.append(f"wrk.headers[{_lua_string(name)}] = {_lua_string(value)}")
    if target.vary:
        template = json.dumps({**target.body, target.vary: 0}).replace(f'"{target.vary}": 0', f'"{target.vary}": %d')
        lines += [
            "math.randomseed(os.time())",
            "request = function()",
            f"  return wrk.format(nil, nil, nil, string.format([[{template}]], math.random(1, 1000000000)))",
            "end",
        ]
    # Name each failed answer's status on stdout, so a run says what its errors were.
    failed = f"status ~= {target.expect}" if target.expect else "status >= 400"
    lines += [
        "response = function(status, headers, body)",
        f'  if {failed} then io.write("status ", status, "\\n") end',
        "end",
    ]
    return "\n".join(lines) + "\n"


def _lua_string(text: str) -> str:
    """A Lua string literal: header values hold quotes (ETags are quoted)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _wrk(target: Target, duration: int, connections: int) -> Result:
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(_lua(target))
        script.flush()
        command = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "30s"]
        out = subprocess.run(
            [*command, "-s", script.name, target.url], capture_output=True, text=True, check=True, timeout=duration + 90
        ).stdout
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.M))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    socket_errors = sum(map(int, socket.groups())) if socket else 0
    failures = Counter(re.findall(r"^status (\d+)$", out, re.M))
    unexpected = sum(n for status, n in failures.items() if 200 <= int(status) < 400)  # wrk counts these as fine
    errors = (int(non_2xx.group(1)) if non_2xx else 0) + socket_errors + unexpected
    if socket_errors:
        failures["socket"] = socket_errors
    return Result(
        requests_per_second=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        p50_ms=_ms(percentiles["50"]),
        p99_ms=_ms(percentiles["99"]),
        errors=errors,
        requests=total,
        failures=dict(failures),
    )


def _python(target: Target, duration: int, connections: int) -> Result:
    parts = urlsplit(target.url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    body = json.dumps(target.body).encode() if target.body is not None else None
    vary = random.Random()
    headers = {**(target.headers or {}), **({"Content-Type": "application/json"} if body else {})}
    latencies: list[float] = []
    failures = Counter()
    lock = threading.Lock()
    deadline = time.perf_counter() + duration

    def worker():
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        mine, failed = [], Counter()
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                payload = body
                if target.vary:
                    payload = json.dumps({**target.body, target.vary: vary.randint(1, 10**9)}).encode()
                conn.request(target.method, path, body=payload, headers=headers)
                response = conn.getresponse()
                response.read()
                if (target.expect and response.status != target.expect) or not 200 <= response.status < 400:
                    failed[str(response.status)] += 1
            except OSError:
                failed["socket"] += 1
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
            mine.append((time.perf_counter() - started) * 1000)
        with lock:
            latencies.extend(mine)
            failures.update(failed)

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(len(latencies) * p))] if latencies else 0.0

    errors = sum(failures.values())
    return Result(len(latencies) / elapsed, pct(0.50), pct(0.99), errors, len(latencies), dict(failures))
