"""The stacks as module-scoped fixtures: `image_alone`, `compose` and `balanced` (harness.py)."""

import pytest

from tests.stack.harness import Stack, build


@pytest.fixture(scope="module")
def compose(issuer, tmp_path_factory, redis_url):
    """compose.yaml: the front door before api1 and api2 (TRUSTED_PROXIES=1)."""
    stack = build(issuer, tmp_path_factory, redis_url, door=True, balancer=False)
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def balanced(issuer, tmp_path_factory, redis_url):
    """compose behind a TLS load balancer (TRUSTED_PROXIES=2, as docs/deployment.md says)."""
    stack = build(issuer, tmp_path_factory, redis_url, door=True, balancer=True)
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def image_alone(issuer, tmp_path_factory, redis_url):
    """`docker run -p 5000:5000`: the image's nginx is the only proxy (TRUSTED_PROXIES unset)."""
    stack = build(issuer, tmp_path_factory, redis_url, door=False, balancer=False, instances=1)
    yield stack
    stack.stop()


@pytest.fixture(params=["image_alone", "compose", "balanced"])
def topology(request) -> Stack:
    return request.getfixturevalue(request.param)
