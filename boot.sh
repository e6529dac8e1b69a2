#!/bin/sh
# Container start: bring the schema up to date, then hand the process over to gunicorn.
set -e
# What is made here stays writable by group 0: another UID in it may run next (OpenShift).
umask 0002
flask db upgrade
# SQLite makes its files 0644 whatever the umask (and copies the mode to its -wal/-shm files).
chmod -f g+w instance/*.sqlite3* 2>/dev/null || true
exec gunicorn -c gunicorn.conf.py wsgi:app
