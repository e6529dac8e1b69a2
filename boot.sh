#!/bin/sh
# Container start: bring the schema up to date, then hand the process over to gunicorn.
set -e
flask db upgrade
exec gunicorn -c gunicorn.conf.py wsgi:app
