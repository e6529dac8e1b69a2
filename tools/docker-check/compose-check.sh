#!/usr/bin/env bash
# compose.yaml under a real engine: one nginx front door, two API instances sharing PostgreSQL and
# Redis; slow clients, a paused Redis and restarts behind the front door.
#
#   bash compose-check.sh SRC REPORT       # run by run.sh after it built dmarket-api; DOCKER_HOST set
#
# No Docker Hub here: postgres:15, redis:7 and nginx:1.26 are STAND-INS built from Debian bookworm's
# packages (images/postgres, images/redis, images/nginx) on the python:3.11-slim stand-in, tagged
# with the names compose.yaml uses. Each instance is reached directly on its container address
# (only the front door publishes a port). Exit status: the number of failed checks.
set -uo pipefail
SRC=$1 LOG=$2
HERE=$(cd "$(dirname "$0")" && pwd)
PROJECT=${COMPOSE_PROJECT:-dockercheck}
PF=${API_PORT:-5401}
FAILS=0
say()  { echo "$*" | tee -a "$LOG"; }
pass() { say "PASS  $*"; }
fail() { say "FAIL  $*"; FAILS=$((FAILS + 1)); }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
wait_http() { local i; for i in $(seq 1 120); do curl -sf -m 2 "$1" >/dev/null && return 0; sleep 0.5; done; return 1; }
status() { curl -sS -m 10 -o /dev/null -w '%{http_code}' "$@"; }
dc() { (cd "$SRC" && docker-compose -p "$PROJECT" "$@"); }

say "--- compose: $(docker-compose version --short 2>/dev/null || echo '?'), compose.yaml of $(git -C "$SRC" log --oneline -1 | cut -c1-60)"
for image in postgres:15 redis:7 nginx:1.26; do
    if ! docker image inspect "$image" >/dev/null 2>&1; then
        dir=$HERE/images/${image%%:*}
        ( cd "$dir" && docker build --network host -t "$image" . ) >"${LOG%/*}/build-${image%%:*}.log" 2>&1 \
            || { fail "stand-in $image (log ${LOG%/*}/build-${image%%:*}.log)"; exit "$FAILS"; }
        say "      stand-in $image built from Debian's packages"
    fi
done

cat >"$SRC/.env" <<EOF
SECRET_KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
POSTGRES_PASSWORD=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
API_PORT=$PF
RATELIMIT_WRITES=5 per minute
WEB_CONCURRENCY=2
EOF
dc down -v >/dev/null 2>&1
t0=$(date +%s)
dc up -d >"${LOG%/*}/compose-up.log" 2>&1
check "docker-compose up -d (log ${LOG%/*}/compose-up.log)" test $? = 0
[[ ${KEEP:-0} == 1 ]] || trap 'dc down -v >/dev/null 2>&1; rm -f "$SRC/.env"' EXIT
F=http://127.0.0.1:$PF
check "the front door answers on :$PF" wait_http "$F/health/ready"
say "      up after $(( $(date +%s) - t0 ))s"
ip_of() { docker inspect "$(dc ps -q "$1")" --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}'; }
A1=http://$(ip_of api1):5000 A2=http://$(ip_of api2):5000
check "api1 answers on its container address ($A1)" wait_http "$A1/health/ready"
check "api2 answers on its container address ($A2)" wait_http "$A2/health/ready"
published=$(docker ps --filter "label=com.docker.compose.project=$PROJECT" --format '{{.Names}} {{.Ports}}' | grep -- '->' | tr '\n' ';')
check "only the front door publishes a port: $published" \
    bash -c "[[ \$(tr ';' '\n' <<<'$published' | grep -c .) == 1 && '$published' == *_front_1* ]]"
for s in db redis; do
    h=$(docker inspect "$(dc ps -q $s)" --format '{{.State.Health.Status}}')
    check "$s health check: $h" test "$h" = healthy
done
check "the API waited for the database (no connection error in api1's log)" \
    bash -c "! (cd '$SRC' && docker-compose -p $PROJECT logs api1 2>&1) | grep -q 'OperationalError'"

TOKEN=$(dc exec -T api1 flask auth token shopper@example.com 2>/dev/null | tail -1 | tr -d '\r')
TOKEN2=$(dc exec -T api2 flask auth token shopper@example.com 2>/dev/null | tail -1 | tr -d '\r')
code=$(status -X POST "$A1/products/create" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '{"name": "Compose lamp", "price": 19.99, "quantity": 3}')
check "POST /products/create on api1 -> 201 (got $code)" test "$code" = 201
check "api2 lists the product created on api1" bash -c "curl -sf '$A2/products?q=Compose' | grep -q 'Compose lamp'"
check "a token minted by api2 works on api1 (one signing key in the shared instance volume)" \
    test "$(status "$A1/me" -H "Authorization: Bearer $TOKEN2")" = 200

JAR=$(mktemp)
SIGNIN_CODE=$(dc exec -T api1 cat instance/local_signin_code 2>/dev/null | tr -d '\r\n')
code=$(curl -sS -m 10 -o /dev/null -w '%{http_code}' -c "$JAR" -X POST "$A1/login" -H "Origin: $A1" \
    --data-urlencode email=browser@example.com --data-urlencode name=Browser --data-urlencode "code=$SIGNIN_CODE")
say "      sign-in form on api1 -> $code"
COOKIE=$(awk '$6 == "dmarket_session" {print $7}' "$JAR")  # api2 is another host name: sent by hand
check "the session cookie from api1's sign-in works on api2 (GET /me -> 200)" \
    test "$(status -H "Cookie: dmarket_session=$COOKIE" "$A2/me")" = 200
rm -f "$JAR"

# RATELIMIT_WRITES=5 per minute, one user, writes alternating between the instances: the 6th is refused.
codes=()
for i in 1 2 3 4 5 6; do
    [[ $((i % 2)) == 1 ]] && url=$A2 || url=$A1
    codes+=("$(status -X POST "$url/products/create" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
        -d "{\"name\": \"Lamp $i\", \"price\": 1, \"quantity\": 1}")")
done
say "      6 writes, alternating api2/api1: ${codes[*]}"
check "the rate-limit count is shared in Redis (1 earlier + 4 x 201, then 429)" \
    test "${codes[*]}" = "201 201 201 201 429 429"

for svc in api1 api2; do
    dc restart "$svc" >/dev/null 2>&1 &
    rpid=$!
    served=0
    for _ in $(seq 1 40); do [[ $(status "$F/products") == 200 ]] && served=$((served + 1)); sleep 0.25; done
    wait "$rpid"
    check "while $svc restarts the front door loses no request ($served/40 requests 200)" test "$served" = 40
    me=http://$(ip_of "$svc"):5000
    check "$svc answers again after its restart" wait_http "$me/health/ready"
    check "$svc still lists the product after its restart" bash -c "curl -sf '$me/products?q=Compose' | grep -q 'Compose lamp'"
done
A1=http://$(ip_of api1):5000 A2=http://$(ip_of api2):5000

check "150 slow connections through the front door: a normal client still answered" python3 "$HERE/abuse.py" slow "$PF"
check "errors answered by the front door (414, 431) are JSON" python3 "$HERE/abuse.py" errors "$PF"
code=$(curl -sS -m 10 -o /dev/null -w '%{http_code}' -H 'X-Forwarded-For: 203.0.113.9' "$F/metrics")
say "      a forged X-Forwarded-For through the front door: /metrics -> $code (metrics are off: 404 either way)"
docker pause "$(dc ps -q redis)" >/dev/null
say "      redis paused (docker pause) for 12 s"
check "Redis paused: no request through the front door 0.5 s slower, no probe waits" python3 "$HERE/abuse.py" probe "$PF" 12
docker unpause "$(dc ps -q redis)" >/dev/null
check "the API logged the fallback to in-memory counting" \
    bash -c "(cd '$SRC' && docker-compose -p $PROJECT logs api1 api2 2>&1) | grep -q 'Rate limit storage unreachable'"
dc stop api1 api2 >/dev/null 2>&1
body=$(curl -sS -m 15 -w ' %{http_code} %{content_type}' "$F/products")
say "      both instances stopped: $body"
check "both instances down: the front door answers 502/504 in the API's JSON shape" \
    bash -c "[[ '$body' == *'\"code\":\"bad_gateway\"'*' 502 application/json' \
             || '$body' == *'\"code\":\"gateway_timeout\"'*' 504 application/json' ]]"
dc start api1 api2 >/dev/null 2>&1
wait_http "$F/health/ready"
A1=http://$(ip_of api1):5000 A2=http://$(ip_of api2):5000
wait_http "$A1/health/ready"; wait_http "$A2/health/ready"
dc restart db >/dev/null 2>&1
wait_http "$A1/health/ready"
check "after a database restart both instances read again" \
    bash -c "curl -sf '$A1/products?q=Compose' | grep -q 'Compose lamp' && curl -sf '$A2/products?q=Compose' | grep -q 'Compose lamp'"

exit "$FAILS"
