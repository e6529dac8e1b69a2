#!/usr/bin/env bash
# Build the project's Dockerfile with a real Docker engine and check what the image serves.
#
#   sudo bash run.sh PROJECT_DIR          # PROJECT_DIR: a git checkout of the API (default: .)
#   make docker-check                     # the same, on this checkout
#
# No Docker Hub here, and no engine running: this installs Debian's docker.io, starts a private
# dockerd (own socket/data under /tmp, no iptables, no NAT, no ip_forward change), builds a
# STAND-IN for python:3.11-slim with debootstrap (Debian bookworm's python3 3.11), builds the
# project's Dockerfile unchanged, runs it, checks it, and stops everything it started. Then it
# builds stand-ins for postgres:15, redis:7 and nginx:1.26 (Debian's packages) and checks compose.yaml.
#
# Env knobs: WORK (default /tmp/dockercheck), SRC (clone of HEAD, default /tmp/docker-api),
#   MIRROR (default http://deb.debian.org/debian), PG_HOST/PG_PORT/PG_USER (default
#   127.0.0.1/5432/postgres, trust auth), PG_DB (default dockertest, dropped and recreated),
#   KEEP=1 (leave dockerd, images and the database in place), REBUILD_BASE=1, SKIP_COMPOSE=1,
#   BRIDGE_IP (default 172.31.250.1/24).
set -uo pipefail

PROJECT=$(cd "${1:-.}" && pwd)
WORK=${WORK:-/tmp/dockercheck}
SRC=${SRC:-/tmp/docker-api}
ROOTFS=$WORK/rootfs
MIRROR=${MIRROR:-http://deb.debian.org/debian}
HOST_CA_BUNDLE=${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
PG_HOST=${PG_HOST:-127.0.0.1} PG_PORT=${PG_PORT:-5432} PG_USER=${PG_USER:-postgres} PG_DB=${PG_DB:-dockertest}
IMAGE=dmarket-api
HERE=$(cd "$(dirname "$0")" && pwd)
export DOCKER_HOST=unix://$WORK/docker.sock
mkdir -p "$WORK"
LOG=$WORK/report.txt; : > "$LOG"
FAILS=0
say()  { echo "$*" | tee -a "$LOG"; }
pass() { say "PASS  $*"; }
fail() { say "FAIL  $*"; FAILS=$((FAILS + 1)); }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
now() { date +%s.%N; }
secs() { python3 -c "import sys; print('%.1f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$1" "$2"; }
free_port() { local p; for p in "$@"; do ss -ltnH "sport = :$p" | grep -q . || { echo "$p"; return; }; done; return 1; }
wait_http() { local i; for i in $(seq 1 80); do curl -sf -m 2 "$1" >/dev/null && return 0; sleep 0.5; done; return 1; }
http_is() { # URL EXPECTED_STATUS [CONTENT_TYPE_PREFIX]
    local got; got=$(curl -sS -m 10 -o /dev/null -w '%{http_code} %{content_type}' "$1")
    say "      GET $1 -> $got"
    [[ ${got%% *} == "$2" && ${got#* } == ${3:-}* ]]
}
STARTED=()   # containers this script started
cleanup() {
    local c
    for c in "${STARTED[@]}"; do docker rm -f "$c" >/dev/null 2>&1; done
    [[ -n ${SLOWPID:-} ]] && kill "$SLOWPID" 2>/dev/null
    if [[ ${KEEP:-0} != 1 ]]; then
        if [[ -n ${DOCKERD_PID:-} ]]; then
            kill "$DOCKERD_PID" 2>/dev/null
            for _ in $(seq 1 40); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.5; done
            say "dockerd (pid $DOCKERD_PID) stopped"
            # dockerd leaves its data-root bind mount and netns mount behind; and the bridge it made.
            mount | awk -v w="$WORK/" 'index($3, w) == 1 {print $3}' | sort -r | xargs -r -n1 umount
            [[ ${MADE_BRIDGE:-0} == 1 ]] && ip link delete docker0 2>/dev/null
        fi
        psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -qc "DROP DATABASE IF EXISTS $PG_DB" postgres 2>/dev/null
    fi
}
trap cleanup EXIT

# --- 1. engine -------------------------------------------------------------------------------
if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
    apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
    apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends docker.io debootstrap >/dev/null
fi
if [[ ${SKIP_COMPOSE:-0} != 1 ]] && ! command -v docker-compose >/dev/null; then
    apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends docker-compose >/dev/null \
        || { apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
             apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends docker-compose >/dev/null; }
fi
if docker info >/dev/null 2>&1; then
    say "dockerd already answering on $DOCKER_HOST (not started by this run)"
else
    ip link show docker0 >/dev/null 2>&1 || MADE_BRIDGE=1
    dockerd --host "$DOCKER_HOST" --data-root "$WORK/data" --exec-root "$WORK/exec" \
        --pidfile "$WORK/dockerd.pid" --storage-driver overlay2 \
        --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
        --bip "${BRIDGE_IP:-172.31.250.1/24}" >"$WORK/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
    docker info >/dev/null 2>&1 || { tail -20 "$WORK/dockerd.log"; fail "dockerd did not start"; exit 1; }
    say "dockerd started, pid $DOCKERD_PID, log $WORK/dockerd.log"
fi
say "engine: $(docker version --format 'client {{.Client.Version}} / server {{.Server.Version}}, API {{.Server.APIVersion}}')"

# --- 2. stand-in base image ------------------------------------------------------------------
if [[ ${REBUILD_BASE:-0} == 1 ]] || ! docker image inspect python:3.11-slim >/dev/null 2>&1; then
    rm -rf "$ROOTFS"
    t0=$(now)
    debootstrap --variant=minbase --include=ca-certificates,netbase,tzdata,python3,python3-venv,python3-pip \
        bookworm "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || { fail "debootstrap"; exit 1; }
    # Like the official image: python/pip in /usr/local/bin, no PEP 668 marker (pip installs system-wide).
    rm -f "$ROOTFS"/usr/lib/python3.*/EXTERNALLY-MANAGED
    for n in python python3 python3.11; do ln -sf /usr/bin/python3 "$ROOTFS/usr/local/bin/$n"; done
    for n in pip pip3; do ln -sf /usr/bin/pip3 "$ROOTFS/usr/local/bin/$n"; done
    # Trust whatever extra CAs this host trusts (e.g. a TLS-intercepting egress proxy), else pip fails.
    python3 - "$HOST_CA_BUNDLE" "$ROOTFS/etc/ssl/certs/ca-certificates.crt" \
        "$ROOTFS/usr/local/share/ca-certificates/host-extra.crt" <<'EOF'
import re, sys
pem = lambda p: re.findall(r'-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----', open(p).read(), re.S)
have = set(pem(sys.argv[2])); extra = [c for c in pem(sys.argv[1]) if c not in have]
if extra: open(sys.argv[3], 'w').write('\n'.join(extra) + '\n')
print('host-only CA certificates added to the stand-in:', len(extra))
EOF
    chroot "$ROOTFS" update-ca-certificates >/dev/null
    rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
    tar -C "$ROOTFS" -c . | docker import \
        --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
        -m 'STAND-IN for python:3.11-slim (debootstrap bookworm + Debian python3)' - python:3.11-slim >/dev/null
    say "stand-in python:3.11-slim built in $(secs "$t0" "$(now)")s"
fi
say "base: $(docker run --rm python:3.11-slim sh -c 'echo $(command -v python) $(python --version) / pip $(pip --version | cut -d" " -f2)')"

# --- 3. build the project's Dockerfile, unchanged --------------------------------------------
rm -rf "$SRC"; git clone -q "$PROJECT" "$SRC"
say "project: $(git -C "$SRC" log --oneline -1)"
t0=$(now)
( cd "$SRC" && docker build --no-cache --network host -t "$IMAGE" . ) >"$WORK/build.log" 2>&1
rc=$?; BUILD_S=$(secs "$t0" "$(now)")
check "docker build --no-cache --network host -t $IMAGE . (rc=$rc, ${BUILD_S}s; log $WORK/build.log)" test $rc = 0
[[ $rc == 0 ]] || exit 1
grep -m1 'Sending build context' "$WORK/build.log" | tee -a "$LOG"
say "image size: $(docker image inspect $IMAGE --format '{{.Size}}') bytes; base: $(docker image inspect python:3.11-slim --format '{{.Size}}') bytes"
docker history "$IMAGE" --format '      {{.Size}}\t{{.CreatedBy}}' | grep -v '^      0B' | cut -c1-110 | tee -a "$LOG"

# --- 4. docker run -p PORT:5000 (bridge, userland proxy), no environment ---------------------
P=$(free_port 5000 5400) || { fail "no free port among 5000 5400"; exit 1; }
say "--- run A: docker run -d -p $P:5000 $IMAGE (SQLite, local sign-in)"
A=$(docker run -d -p "$P:5000" --name dockercheck-a "$IMAGE"); STARTED+=("$A")
check "/health answers within 40s" wait_http "http://127.0.0.1:$P/health"
B="http://localhost:$P"  # the development PUBLIC_URL's host: 127.0.0.1 is redirected (307) to it
check "GET /health 200 json" http_is "$B/health" 200 application/json
check "GET /health/ready 200 json" http_is "$B/health/ready" 200 application/json
check "GET /products 200 json" http_is "$B/products" 200 application/json
check "GET /openapi redirects (308)" http_is "$B/openapi" 308
check "GET /openapi/ 200 html" http_is "$B/openapi/" 200 text/html
check "GET /openapi/openapi.json 200 json" http_is "$B/openapi/openapi.json" 200 application/json
check "GET /openapi/swagger/js/swagger-ui-bundle.js 200" http_is "$B/openapi/swagger/js/swagger-ui-bundle.js" 200
hdrs=$(curl -sS -m 10 -D - -o /dev/null "$B/products")
check "no gunicorn banner, no version in Server ($(grep -i '^server:' <<<"$hdrs" | tr -d '\r'))" \
    bash -c "! grep -qiE '^server:.*(gunicorn|[0-9])' <<<'$hdrs'"
for _ in 1 2 3; do curl -sS -m 5 -o /dev/null "$B/health"; curl -sS -m 5 -o /dev/null "$B/health/ready"; done
sleep 0.5
check "health probes are not in the access log (at DEBUG), /products is" \
    bash -c "! docker logs $A 2>&1 | grep -q 'GET /health' && docker logs $A 2>&1 | grep -q 'GET /products 200'"
NW=$(docker logs "$A" 2>&1 | grep -c 'Booting worker'); HOSTCPUS=$(nproc)
check "workers with no CPU limit: $NW (2 x $HOSTCPUS usable CPUs + 1)" test "$NW" = $((2 * HOSTCPUS + 1))
check "instance/ is group 0 and group-writable: $(docker exec "$A" stat -c '%U:%G %A' instance)" \
    bash -c "[[ \$(docker exec $A stat -c '%g %A' instance) == '0 drwxrwx---' ]]"
check "HOME is writable: $(docker exec "$A" sh -c 'echo $HOME')" docker exec "$A" sh -c 'touch "$HOME/.probe" && rm "$HOME/.probe"'
ID=$(docker exec "$A" id); say "      docker exec id: $ID"
check "container user is not root" test "$(docker exec "$A" id -u)" != 0
check "PID 1 is gunicorn (boot.sh exec'd it)" grep -q gunicorn <(docker exec "$A" cat /proc/1/cmdline)
check "nginx in front of gunicorn: $(docker exec "$A" sh -c 'cat /proc/[0-9]*/cmdline 2>/dev/null | tr "\0" " " | grep -o "nginx: master[^/]*" | head -1')" \
    bash -c "docker exec $A sh -c 'cat /proc/[0-9]*/cmdline' 2>/dev/null | tr '\0' ' ' | grep -q 'nginx: master'"
check "150 slow connections through -p $P: a normal client still answered" python3 "$HERE/abuse.py" slow "$P"
check "errors answered before the app (414, 431) are JSON" python3 "$HERE/abuse.py" errors "$P"
check "migrations ran at start (log)" grep -q 'Running upgrade .* -> ' <(docker logs "$A" 2>&1)
check "flask db current is head" grep -q '(head)' <(docker exec "$A" flask db current 2>/dev/null)
TOKEN=$(docker exec "$A" flask auth token you@example.com 2>/dev/null | tail -1)
code=$(curl -sS -m 10 -o /dev/null -w '%{http_code}' -X POST "$B/products/create" -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' -d '{"name": "Desk lamp", "price": 19.99, "quantity": 3}')
check "POST /products/create with a local token -> 201 (got $code)" test "$code" = 201
# Whoever merely reaches the port gets no token (issue 11 item 5): the form wants the code from the log.
code=$(curl -sS -m 10 -o /dev/null -w '%{http_code}' -X POST "$B/login" -H "Origin: $B" \
    --data-urlencode email=eve@example.com --data-urlencode admin=true)
check "POST /login without the sign-in code -> 403 (got $code)" test "$code" = 403
LINK=$(docker logs "$A" 2>&1 | grep -o 'http://[^ ]*/login?code=[^ ]*' | head -1)
check "the start-up log shows the sign-in link: ${LINK:-none}" test -n "$LINK"
code=$(curl -sS -m 10 -o /dev/null -w '%{http_code}' -X POST "$B/login" -H "Origin: $B" \
    --data-urlencode email=dev@example.com --data-urlencode "code=${LINK##*code=}")
check "POST /login with the logged code -> 303 (got $code)" test "$code" = 303
t0=$(now); st=
for _ in $(seq 1 90); do st=$(docker inspect "$A" --format '{{.State.Health.Status}}'); [[ $st == starting ]] || break; sleep 1; done
check "HEALTHCHECK status: $st (after $(secs "$t0" "$(now)")s more)" test "$st" = healthy
t0=$(now); docker stop "$A" >/dev/null; STOP_S=$(secs "$t0" "$(now)")
EXIT=$(docker inspect "$A" --format '{{.State.ExitCode}}')
check "docker stop (idle): ${STOP_S}s, exit $EXIT, gunicorn 'Shutting down: Master'" \
    bash -c "[[ $EXIT == 0 ]] && docker logs $A 2>&1 | grep -q 'Shutting down: Master'"

# --- 5. docker stop with a request in flight (slow client holds a sync worker) ---------------
say "--- run B: docker stop (Docker's default 10 s) while a slow client holds a connection"
C=$(docker run -d -p "$P:5000" "$IMAGE"); STARTED+=("$C"); wait_http "$B/health"
python3 -c "import socket,time; s=socket.create_connection(('127.0.0.1',$P)); s.sendall(b'GET /products HTTP/1.1\r\nHost: x\r\n'); time.sleep(60)" &
SLOWPID=$!; sleep 1
t0=$(now); docker stop "$C" >/dev/null; s=$(secs "$t0" "$(now)")
e=$(docker inspect "$C" --format '{{.State.ExitCode}}')
check "docker stop with a request in flight: ${s}s, exit $e (137 = killed before gunicorn finished)" \
    bash -c "[[ $e == 0 ]] && docker logs $C 2>&1 | grep -q 'Shutting down: Master'"
kill "$SLOWPID" 2>/dev/null; SLOWPID=

# --- 5b. a CPU-limited container sizes its workers from its quota and affinity --------------
say "--- run D: docker run --cpus=0.5 --cpuset-cpus=0 (expect 2 x 1 + 1 = 3 workers)"
C=$(docker run -d --cpus=0.5 --cpuset-cpus=0 -p "$P:5000" "$IMAGE"); STARTED+=("$C")
check "/health answers (CPU-limited)" wait_http "$B/health"
sleep 1
NW=$(docker logs "$C" 2>&1 | grep -c 'Booting worker')
check "workers started under --cpus=0.5 --cpuset-cpus=0: $NW" test "$NW" = 3
NW=$(docker exec -e WEB_CONCURRENCY=1 "$C" python -c "import runpy; print(runpy.run_path('gunicorn.conf.py')['workers'])")
check "WEB_CONCURRENCY still overrides it (1 -> $NW)" test "$NW" = 1
docker rm -f "$C" >/dev/null

# --- 5c. an arbitrary UID in group 0 (OpenShift) ---------------------------------------------
say "--- run E: docker run --user 12345:0 (arbitrary UID, group 0)"
C=$(docker run -d --user 12345:0 -p "$P:5000" "$IMAGE"); STARTED+=("$C")
check "/health answers as uid 12345" wait_http "$B/health"
say "      docker exec id: $(docker exec "$C" id)"
check "GET /products 200 json" http_is "$B/products" 200 application/json
TOKEN=$(docker exec "$C" flask auth token you@example.com 2>/dev/null | tail -1)
code=$(curl -sS -m 10 -o /dev/null -w '%{http_code}' -X POST "$B/products/create" -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' -d '{"name": "Desk lamp", "price": 19.99, "quantity": 3}')
check "POST /products/create as uid 12345 -> 201 (got $code)" test "$code" = 201
say "      $(docker exec "$C" ls -ln instance | tail -n +2 | awk '{print $1, $3, $4, $NF}' | tr '\n' ';')"
check "no PermissionError in the log" bash -c "! docker logs $C 2>&1 | grep -q PermissionError"
check "the SQLite database is group-writable for the next UID: $(docker exec "$C" stat -c %A instance/dmarket.sqlite3)" \
    test "$(docker exec "$C" stat -c %A instance/dmarket.sqlite3)" = -rw-rw-r--
t0=$(now); docker stop "$C" >/dev/null; s=$(secs "$t0" "$(now)")
check "docker stop: ${s}s, exit $(docker inspect "$C" --format '{{.State.ExitCode}}')" test "$(docker inspect "$C" --format '{{.State.ExitCode}}')" = 0

# --- 6. PostgreSQL on the host, host networking, PORT honoured ---------------------------------
if command -v psql >/dev/null && psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -qc 'select 1' postgres >/dev/null 2>&1; then
    psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -q -c "DROP DATABASE IF EXISTS $PG_DB" -c "CREATE DATABASE $PG_DB" postgres
    Q=$(free_port 5400 5401) || { fail "no free port among 5400 5401"; exit 1; }
    URL=postgresql://$PG_USER@$PG_HOST:$PG_PORT/$PG_DB
    say "--- run C: docker run -d --network host -e PORT=$Q -e DATABASE_URL=$URL $IMAGE"
    D=$(docker run -d --network host -e PORT="$Q" -e DATABASE_URL="$URL" --name dockercheck-pg "$IMAGE"); STARTED+=("$D")
    B="http://localhost:$Q"
    check "/health answers within 40s" wait_http "$B/health"
    check "GET /health/ready 200" http_is "$B/health/ready" 200 application/json
    check "GET /products 200" http_is "$B/products" 200 application/json
    check "GET /openapi/ 200 html" http_is "$B/openapi/" 200 text/html
    check "GET /openapi/openapi.json 200" http_is "$B/openapi/openapi.json" 200 application/json
    check "migrations ran on PostgreSQL (PostgresqlImpl in log)" grep -q PostgresqlImpl <(docker logs "$D" 2>&1)
    v=$(psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -Atc 'select version_num from alembic_version' "$PG_DB")
    check "alembic_version in $PG_DB = $v, the head" grep -q "^$v (head)" <(docker exec "$D" flask db heads 2>/dev/null)
    n=$(psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -Atc \
        "select count(*) from pg_index i join pg_class c on c.oid = i.indexrelid where c.relname like '%_trgm' and i.indisvalid" "$PG_DB")
    check "trigram indexes built (CONCURRENTLY) and valid: $n of 4 (0003 and 0009)" test "$n" = 4
    TOKEN=$(docker exec "$D" flask auth token you@example.com 2>/dev/null | tail -1)
    code=$(curl -sS -m 10 -o /dev/null -w '%{http_code}' -X POST "$B/products/create" -H "Authorization: Bearer $TOKEN" \
        -H 'Content-Type: application/json' -d '{"name": "Desk lamp", "price": 19.99, "quantity": 3}')
    check "POST /products/create -> 201 (got $code)" test "$code" = 201
    n=$(psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -Atc 'select count(*) from products' "$PG_DB")
    check "the row is in PostgreSQL (count=$n)" test "$n" = 1
    check "container user is not root" test "$(docker exec "$D" id -u)" != 0
    for _ in $(seq 1 90); do st=$(docker inspect "$D" --format '{{.State.Health.Status}}'); [[ $st == starting ]] || break; sleep 1; done
    check "HEALTHCHECK (probes PORT=$Q): $st" test "$st" = healthy
    docker restart "$D" >/dev/null; wait_http "$B/health"
    check "restart: migrations are a no-op, /products still 200" http_is "$B/products?q=lamp" 200 application/json
    t0=$(now); docker stop "$D" >/dev/null; s=$(secs "$t0" "$(now)")
    check "docker stop: ${s}s, exit $(docker inspect "$D" --format '{{.State.ExitCode}}')" test "$(docker inspect "$D" --format '{{.State.ExitCode}}')" = 0
else
    say "SKIP  PostgreSQL run: no psql or no server at $PG_HOST:$PG_PORT"
fi

# --- 7. compose.yaml: two API instances, PostgreSQL and Redis ---------------------------------
if [[ ${SKIP_COMPOSE:-0} != 1 ]]; then
    bash "$HERE/compose-check.sh" "$SRC" "$LOG"; rc=$?
    FAILS=$((FAILS + rc))
fi

say "--- $FAILS failure(s); report in $LOG"
exit $((FAILS > 0))
