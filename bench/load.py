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
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class Result:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int


@dataclass
class Target:
    method: str
    url: str
    body: dict | None = None
    headers: dict | None = None
    # An integer field of `body` given a fresh random value per request, so an update really
    # writes (the API commits nothing when a PUT changes nothing).
    vary: str | None = None


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
        lines.append(f'wrk.headers["{name}"] = "{value}"')
    if target.vary:
        template = json.dumps({**target.body, target.vary: 0}).replace(f'"{target.vary}": 0', f'"{target.vary}": %d')
        lines += [
            "math.randomseed(os.time())",
            "request = function()",
            f"  return wrk.format(nil, nil, nil, string.format([[{template}]], math.random(1, 1000000000)))",
            "end",
        ]
    return "\n".join(lines) + "\n"


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
    errors = (int(non_2xx.group(1)) if non_2xx else 0) + (sum(map(int, socket.groups())) if socket else 0)
    return Result(
        requests_per_second=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        p50_ms=_ms(percentiles["50"]),
        p99_ms=_ms(percentiles["99"]),
        errors=errors,
        requests=total,
    )


def _python(target: Target, duration: int, connections: int) -> Result:
    parts = urlsplit(target.url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    body = json.dumps(target.body).encode() if target.body is not None else None
    vary = random.Random()
    headers = {**(target.headers or {}), **({"Content-Type": "application/json"} if body else {})}
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    deadline = time.perf_counter() + duration

    def worker():
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        mine, failed = [], 0
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                if target.vary:
                    body = json.dumps({**target.body, target.vary: vary.randint(1, 10**9)}).encode()
                conn.request(target.method, path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                failed += not 200 <= response.status < 400
            except OSError:
                failed += 1
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
            mine.append((time.perf_counter() - started) * 1000)
        with lock:
            latencies.extend(mine)
            errors[0] += failed

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

    return Result(len(latencies) / elapsed, pct(0.50), pct(0.99), errors[0], len(latencies))
