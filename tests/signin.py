"""Drive the browser sign-in: the test client plays the browser, the test issuer the provider."""

from urllib.parse import parse_qs, urlsplit

import requests


def start(client, next_path: str | None = None):
    """GET /login; returns the redirect to the provider and its query parameters."""
    response = client.get("/login", query_string={"next": next_path} if next_path else None)
    assert response.status_code == 302, response.get_data(as_text=True)
    location = response.headers["Location"]
    return location, {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def provider_answer(authorize_url: str) -> str:
    """The provider signs the user in and redirects back: returns the callback path and query."""
    answer = requests.get(authorize_url, allow_redirects=False, timeout=5)
    assert answer.status_code in (302, 303), answer.text
    back = urlsplit(answer.headers["Location"])
    return f"{back.path}?{back.query}"


def sign_in(client, next_path: str | None = None):
    """The whole round trip; returns the response to /callback."""
    authorize_url, _ = start(client, next_path)
    return client.get(provider_answer(authorize_url))
