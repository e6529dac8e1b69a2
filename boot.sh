#!/bin/sh
# Container start: bring the schema up to date, then hand the process over to gunicorn.
set -e
# Files made here (the SQLite database) stay writable by group 0: another UID in it may run next.
umask 0002
flask db upgrade
exec gunicorn -c gunicorn.conf.py wsgi:app
