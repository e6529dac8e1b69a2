"""The local issuer's public face: discovery and JWKS, as any OpenID provider publishes them."""

from flask import current_app
from flask_openapi3 import APIBlueprint, Tag

bp = APIBlueprint("wellknown", __name__, abp_tags=[Tag(name="auth", description="Authentication")])


def _issuer():
    return current_app.extensions["dmarket.auth"]["local_issuer"]


@bp.get("/.well-known/openid-configuration", doc_ui=False)
def discovery():
    """OpenID discovery document of the local development issuer."""
    return _issuer().discovery()


@bp.get("/.well-known/jwks.json", doc_ui=False)
def jwks():
    """Public signing keys of the local development issuer."""
    return _issuer().jwks()
