# DMarket API: `docker build -t dmarket-api . && docker run -p 5000:5000 dmarket-api`
# With no environment it runs like `make run` (SQLite in instance/, local sign-in). Clients reach
# nginx on PORT, which passes whole requests to gunicorn (boot.sh; docs/deployment.md).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FLASK_APP=wsgi.py \
    HOST=0.0.0.0 \
    PORT=5000 \
    HOME=/home/dmarket \
    FRONT_PROXY=nginx

WORKDIR /srv/dmarket
# Any UID in group 0 must work (OpenShift runs images as an arbitrary UID with GID 0), so the
# user's group is 0 and whatever the app writes to is group-owned by 0 and group-writable.
RUN useradd --uid 10001 --gid 0 --home-dir /home/dmarket --create-home --no-log-init dmarket \
    && chmod 0770 /home/dmarket

# nginx in front of gunicorn: a slow or stalled client then holds a buffer of nginx, never a worker.
# Debian 12's nginx-light (no extra modules, so no image libraries); Debian 13 has only `nginx`.
RUN apt-get update -q \
    && (apt-get install -y -q --no-install-recommends nginx-light \
        || apt-get install -y -q --no-install-recommends nginx) \
    && apt-get clean && rm -rf /var/lib/apt/lists/*

COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY app ./app
COPY migrations ./migrations
COPY nginx ./nginx
COPY wsgi.py gunicorn.conf.py boot.sh ./
RUN mkdir instance && chown 10001:0 instance && chmod 0770 instance

USER 10001
EXPOSE 5000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '5000'), timeout=4)"

# gunicorn stops gracefully on SIGTERM within GUNICORN_GRACEFUL_TIMEOUT (8 s), inside Docker's 10 s.
STOPSIGNAL SIGTERM
# Migrations run at start (not at build): the database is only reachable then.
CMD ["./boot.sh"]
