#!/usr/bin/env bash
# compose.yaml under a real engine: two API instances share PostgreSQL and Redis, and survive restarts.
#
#   bash compose-check.sh SRC REPORT       # run by run.sh after it built dmarket-api; DOCKER_HOST set
#
# No Docker Hub here: postgres:15 and redis:7 are STAND-INS built from Debian bookworm's packages
# (images/postgres, images/redis) on the python:3.11-slim stand-in, tagged with the names
# compose.yaml uses. Exit status: the number of failed checks.
set -uo pipefail
SRC=$1 LOG=$2
HERE=$(cd "$(dirname "$0")" && pwd)
PROJECT=${COMPOSE_PROJECT:-dockercheck}
P1=${API1_PORT:-5401} P2=${API2_PORT:-5402}
FAILS=0
say()  { echo "$*" | tee -a "$LOG"; }
pass() { say "PASS  $*"; }
fail() { say "FAIL  $*"; FAILS=$((FAILS + 1)); }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
wait_http() { local i; for i in $(seq 1 120); do curl -sf -m 2 "$1" >/dev/null && return 0; sleep 0.5; done; return 1; }
status() { curl -sS -m 10 -o /dev/null -w '%{http_code}' "$@"; }
dc() { (cd "$SRC" && docker-compose -p "$PROJECT" "$@"); }

say "--- compose: $(docker-compose version --short 2>/dev/null || echo '?'), compose.yaml of $(git -C "$SRC" log --oneline -1 | cut -c1-60)"
for image in postgres:15 redis:7; do
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
API1_PORT=$P1
API2_PORT=$P2
RATELIMIT_WRITES=5 per minute
WEB_CONCURRENCY=2
EOF
dc down -v >/dev/null 2>&1
t0=$(date +%s)
dc up -d >"${LOG%/*}/compose-up.log" 2>&1
check "docker-compose up -d (log ${LOG%/*}/compose-up.log)" test $? = 0
[[ ${KEEP:-0} == 1 ]] || trap 'dc down -v >/dev/null 2>&1; rm -f "$SRC/.env"' EXIT
A1=http://127.0.0.1:$P1 A2=http://127.0.0.1:$P2
check "api1 answers on :$P1" wait_http "$A1/health/ready"
check "api2 answers on :$P2" wait_http "$A2/health/ready"
say "      both up after $(( $(date +%s) - t0 ))s"
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
check "the session cookie from api1's sign-in works on api2 (GET /me -> 200)" \
    test "$(status -b "$JAR" "$A2/me")" = 200
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
    [[ $svc == api1 ]] && { me=$A1; other=$A2; } || { me=$A2; other=$A1; }
    dc restart "$svc" >/dev/null 2>&1 &
    rpid=$!
    served=0
    for _ in $(seq 1 20); do [[ $(status "$other/products") == 200 ]] && served=$((served + 1)); sleep 0.3; done
    wait "$rpid"
    check "while $svc restarts the other instance serves ($served/20 requests 200)" test "$served" = 20
    check "$svc answers again after its restart" wait_http "$me/health/ready"
    check "$svc still lists the product after its restart" bash -c "curl -sf '$me/products?q=Compose' | grep -q 'Compose lamp'"
done
dc restart db >/dev/null 2>&1
wait_http "$A1/health/ready"
check "after a database restart both instances read again" \
    bash -c "curl -sf '$A1/products?q=Compose' | grep -q 'Compose lamp' && curl -sf '$A2/products?q=Compose' | grep -q 'Compose lamp'"

exit "$FAILS"
