# DMarket API: `docker build -t dmarket-api . && docker run -p 5000:5000 dmarket-api`
# With no environment it runs like `make run` (SQLite in instance/, local sign-in).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FLASK_APP=wsgi.py \
    HOST=0.0.0.0 \
    PORT=5000

WORKDIR /srv/dmarket
RUN useradd --system --create-home --uid 10001 dmarket

COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY app ./app
COPY migrations ./migrations
COPY wsgi.py gunicorn.conf.py boot.sh ./
RUN mkdir instance && chown dmarket:dmarket instance

USER dmarket
EXPOSE 5000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '5000'), timeout=4)"

# Migrations run at start (not at build): the database is only reachable then.
CMD ["./boot.sh"]
