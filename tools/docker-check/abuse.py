"""Abusive clients against a published port, from the host (standard library only).

    python3 abuse.py slow PORT        150 slow connections (50 headers, 50 bodies, 50 readers) while a
                                      normal client sends 100 GET /products: >= 99 within 1 s, all JSON
    python3 abuse.py errors PORT      errors answered before the app (414, 431) are JSON
    python3 abuse.py probe PORT SECS [BASELINE]
                                      GET /products, /health, /health/ready for SECS: no request more than
                                      BASELINE (0.25) + 0.5 s, no probe more than 0.5 s (prints the maxima)
Exit status 0 when what is promised held.
"""

import json
import socket
import sys
import threading
import time
import urllib.error
import urllib.request

HOST = "127.0.0.1"


def get(port: int, path: str) -> tuple[int, float, str]:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=10) as response:
            response.read()
            return response.status, time.monotonic() - started, response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, time.monotonic() - started, exc.headers.get("Content-Type", "")
    except OSError as exc:
        return 0, time.monotonic() - started, exc.__class__.__name__


def slow(port: int) -> bool:
    stop, trickling, readers = threading.Event(), [], []
    for _ in range(50):
        sock = socket.create_connection((HOST, port))
        sock.sendall(b"GET /products HTTP/1.1\r\nHost: x\r\n")
        trickling.append(sock)
    for _ in range(50):
        sock = socket.create_connection((HOST, port))
        sock.sendall(b"POST /products HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
        sock.sendall(b"Content-Length: 100000\r\n\r\n{")
        trickling.append(sock)
    for _ in range(50):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((HOST, port))
        sock.sendall(b"GET /openapi/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n" * 20)
        readers.append(sock)

    def trickle():
        while not stop.wait(2):
            for sock in trickling:
                try:
                    sock.send(b"X")
                except OSError:
                    pass

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    time.sleep(1)
    results = []
    for _ in range(100):
        results.append(get(port, "/products"))
        time.sleep(0.05)
    stop.set()
    thread.join()
    for sock in trickling + readers:
        sock.close()
    fast = sum(1 for status, seconds, kind in results if status == 200 and seconds < 1 and "json" in kind)
    print(
        f"150 slow connections: {fast}/100 normal answers 200 JSON within 1 s; "
        f"max {max(s for _, s, _ in results):.3f} s; statuses {sorted({r[0] for r in results})}"
    )
    return fast >= 99


def raw(port: int, request: bytes) -> tuple[int, str, dict | None]:
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin1").split("\r\n")
    kind = next((line.split(":", 1)[1].strip() for line in lines if line.lower().startswith("content-type:")), "")
    try:
        return int(lines[0].split()[1]), kind, json.loads(body)
    except (ValueError, IndexError):
        return 0, kind, None


def errors(port: int) -> bool:
    cases = {
        "16 KB query": (b"GET /products?q=" + b"a" * 16384 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 414),
        "12 KB header": (
            b"GET /products HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: " + b"a" * 12288 + b"\r\n\r\n",
            431,
        ),
        "20 KB token": (
            b"GET /me HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer " + b"a" * 20480 + b"\r\n\r\n",
            431,
        ),
    }
    ok = True
    for name, (request, expected) in cases.items():
        status, kind, body = raw(port, request)
        good = status == expected and kind.startswith("application/json") and body and "code" in body
        print(f"{name}: {status} {kind} {body}")
        ok = ok and bool(good)
    return ok


def probe(port: int, seconds: float, baseline: float) -> bool:
    worst: dict[str, float] = {}
    statuses = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for path in ("/products", "/health", "/health/ready"):
            status, took, _ = get(port, path)
            statuses.add(status)
            worst[path] = max(worst.get(path, 0.0), took)
        time.sleep(0.1)
    print(" ".join(f"{path} max {took:.3f} s;" for path, took in worst.items()), f"statuses {sorted(statuses)}")
    return (
        statuses == {200}
        and worst["/products"] <= baseline + 0.5
        and worst["/health"] < 0.5
        and worst["/health/ready"] < 0.5
    )


if __name__ == "__main__":
    mode, port = sys.argv[1], int(sys.argv[2])
    if mode == "slow":
        held = slow(port)
    elif mode == "errors":
        held = errors(port)
    else:
        held = probe(port, float(sys.argv[3]), float(sys.argv[4]) if len(sys.argv) > 4 else 0.25)
    sys.exit(0 if held else 1)
