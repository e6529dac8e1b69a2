"""The framework's ceiling on this machine: a bare Flask app with one constant JSON route.

Served by gunicorn with the same settings as the API, so the ratio API / ceiling shows what
our own work costs on top of Flask, gunicorn and the network stack.
"""

from flask import Flask

app = Flask(__name__)
BODY = b'[{"id": 1, "name": "Lamp", "price": 19.99}, {"id": 2, "name": "Chair", "price": 49.5}]'


@app.get("/ceiling")
def ceiling():
    return app.response_class(BODY, mimetype="application/json")
