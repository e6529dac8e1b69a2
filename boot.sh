#!/bin/sh
# Container start: bring the schema up to date, start nginx in front (FRONT_PROXY=nginx, the
# image's default), then hand the process over to gunicorn.
set -e
# What is made here stays writable by group 0: another UID in it may run next (OpenShift).
umask 0002
flask db upgrade
# SQLite makes its files 0644 whatever the umask (and copies the mode to its -wal/-shm files).
chmod -f g+w instance/*.sqlite3* 2>/dev/null || true
if [ "${FRONT_PROXY:-none}" = nginx ]; then
    # nginx takes the clients on HOST:PORT (a slow one never holds a gunicorn worker) and passes
    # whole requests to gunicorn on a unix socket. gunicorn starts it (NGINX_CONF, when_ready in
    # gunicorn.conf.py) once that socket listens; as a daemon, so gunicorn stays PID 1.
    run="${TMPDIR:-/tmp}/dmarket-nginx"
    mkdir -p "$run"
    sed -e "s|@RUN@|$run|g" -e "s|@CONF@|$PWD/nginx|g" -e "s|@SOCKET@|$run/gunicorn.sock|g" \
        -e "s|@LISTEN@|${HOST:-0.0.0.0}:${PORT:-5000}|g" nginx/image.conf >"$run/nginx.conf"
    nginx -e stderr -t -q -c "$run/nginx.conf"
    export NGINX_CONF="$run/nginx.conf"
    export GUNICORN_BIND="unix:$run/gunicorn.sock"
    # nginx is one more proxy hop: TRUSTED_PROXIES counts the ones in front of the container.
    export TRUSTED_PROXIES=$((${TRUSTED_PROXIES:-0} + 1))
fi
exec gunicorn -c gunicorn.conf.py wsgi:app
