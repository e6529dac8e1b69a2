"""The proxies in front of the image, as deployed: compose's front door (nginx/front-door.conf, the file
compose mounts, with only its addresses and paths changed) and a TLS load balancer before it."""

import datetime
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.live import ROOT, free_port, terminate

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


# Compose's own main configuration for the front door (nginx/front-door-main.conf), its paths moved
# into the test's folder; the balancer below uses it too.
def main_conf(run: Path) -> str:
    conf = (ROOT / "nginx" / "front-door-main.conf").read_text()
    for old in ("/tmp/dmarket-front-", "/etc/nginx/conf.d/*.conf"):
        assert old in conf, f"nginx/front-door-main.conf no longer says {old!r}: update tests/proxies.py"
    conf = conf.replace("/etc/nginx/conf.d/*.conf", f"{run}/default.conf").replace("/tmp/dmarket-front-", f"{run}/")
    # The official image's access log at the http level: the front door's server must replace it.
    return conf.replace("    sendfile on;", f"    sendfile on;\n    access_log {run}/image-default-access.log;")


# A TLS-terminating load balancer as the cloud ones behave (AWS ALB, GCP, Azure): appends the
# client's address to X-Forwarded-For and says https in X-Forwarded-Proto, whatever the client sent.
BALANCER_CONF = """
server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {run}/cert.pem;
    ssl_certificate_key {run}/key.pem;
    location / {{
        proxy_pass http://127.0.0.1:{upstream};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto https;
        proxy_buffer_size 16k;
        proxy_buffers 8 16k;
    }}
}}
"""


class Nginx:
    """An nginx of the test's own in the foreground (`daemon off`): its stdout is the access log."""

    def __init__(self, site: str):
        self.port = free_port()
        self.run = Path(tempfile.mkdtemp(prefix="dmarket-proxy-"))
        self.run.chmod(0o755)  # its workers run as `nobody` when the tests run as root
        (self.run / "default.conf").write_text(site.replace("@PORT@", str(self.port)).replace("@RUN@", str(self.run)))
        (self.run / "nginx.conf").write_text(main_conf(self.run))
        self.log_path = self.run / "stdout.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> "Nginx":
        subprocess.run([NGINX, "-t", "-q", "-c", self.run / "nginx.conf"], check=True, capture_output=True)
        self.log = open(self.log_path, "w")  # noqa: SIM115  (closed in stop)
        self.process = subprocess.Popen(
            [NGINX, "-c", self.run / "nginx.conf", "-g", "daemon off;"], stdout=self.log, stderr=subprocess.STDOUT
        )
        for _ in range(100):
            try:
                with socket_to(self.port):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nginx did not start: {(self.run / 'error.log').read_text()[-2000:]}")

    def logs(self) -> str:
        self.log.flush()
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
        terminate(self.process, timeout=5)
        self.log.close()
        shutil.rmtree(self.run, ignore_errors=True)


def socket_to(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=1)


def front_door(*instance_ports: int) -> Nginx:
    """nginx/front-door.conf before the given instances (api1 and api2 in compose)."""
    conf = (ROOT / "nginx" / "front-door.conf").read_text()
    replacements = {
        "server api1:5000": f"server 127.0.0.1:{instance_ports[0]}",
        "server api2:5000": f"server 127.0.0.1:{instance_ports[1]}",
        "/etc/nginx/dmarket": str(ROOT / "nginx"),
        "listen 80;": "listen 127.0.0.1:@PORT@;",
    }
    for old, new in replacements.items():
        assert old in conf, f"nginx/front-door.conf no longer says {old!r}: update tests/proxies.py"
        conf = conf.replace(old, new)
    return Nginx(conf)


def tls_balancer(upstream_port: int) -> Nginx:
    door = Nginx("")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    (door.run / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (door.run / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    os.chmod(door.run / "key.pem", 0o600)
    (door.run / "default.conf").write_text(BALANCER_CONF.format(port=door.port, run=door.run, upstream=upstream_port))
    return door


def nginx_missing() -> bool:
    return not Path(NGINX).exists()
