"""Fixtures for the tests against oidc-provider: providers started per test, apps pointed at them."""

import pytest

from tests.oidc.harness import WEB_CLIENT, OIDCProvider


@pytest.fixture
def start_provider(tmp_path):
    """Start an oidc-provider (keyword arguments: OIDCProvider's); all are stopped after the test."""
    started = []

    def start(**options) -> OIDCProvider:
        provider = OIDCProvider(tmp_path, **options).start()
        started.append(provider)
        return provider

    yield start
    for provider in started:
        provider.stop()


@pytest.fixture
def app_for(make_app):
    """An app whose issuer is the given provider, with its web client; overrides use environment names."""

    def build(provider: OIDCProvider, **overrides):
        config = {"AUTH0_ISSUER": provider.issuer, "CLIENT_ID": WEB_CLIENT[0], "CLIENT_SECRET": WEB_CLIENT[1]}
        return make_app(**{**config, **overrides})

    return build
