"""Products: anyone reads; signed-in users create; the owner or an admin changes or deletes."""

from dataclasses import replace

from flask import current_app, request, url_for
from flask_openapi3 import APIBlueprint, Tag
from werkzeug.routing import BaseConverter

from app.auth import current_actor, current_identity, require_auth
from app.models.product import etag_of
from app.openapi import request_headers, response_headers
from app.routes.responses import (
    PROTECTED,
    SIGNED_IN,
    Representations,
    as_dicts,
    json_response,
    not_modified,
    pagination_links,
    with_validator,
)
from app.schemas.common import ErrorOut, MessageOut
from app.schemas.products import (
    IdempotencyHeader,
    ProductIn,
    ProductList,
    ProductOut,
    ProductPath,
    ProductQuery,
    ProductUpdate,
)
from app.services import products


class ProductIdConverter(BaseConverter):
    """Any one path segment but `create`: the schema (ProductPath) then states the id rule as a 422.

    Werkzeug's `int` converter would answer letters or a sign with its generic 404 page. `create`
    is left to its own route, so GET /products/create stays 405 (POST only).
    """

    regex = r"(?!create(?:/|$))[^/]+"


bp = APIBlueprint(
    "products",
    __name__,
    abp_tags=[Tag(name="products", description="The marketplace's products")],
    abp_responses={422: ErrorOut, 500: ErrorOut, 503: ErrorOut},
)
# Each process keeps the latest list answers by ETag (LIST_CACHE_SIZE entries, LIST_CACHE_MB): the
# SPA's first page is read far more often than products change, and any change moves every list's tag.
PAGES = "dmarket.list_pages"
bp.record_once(
    lambda state: state.app.extensions.setdefault(
        PAGES, Representations(state.app.config["LIST_CACHE_SIZE"], state.app.config["LIST_CACHE_MB"] << 20)
    )
)


def _if_match():
    """The If-Match header as ETags, or None when the client sent none."""
    return request.if_match if "If-Match" in request.headers else None


def with_etag(response, version: int):
    response.set_etag(etag_of(version))
    return response


@bp.get(
    "/products",
    responses={200: ProductList},
    openapi_extensions=response_headers(
        200,
        "Link",
        "ETag",
        "Cache-Control",
        sometimes=("X-Total-Count", "X-Next-Cursor", "X-Search-Truncated"),
        not_modified=True,
    ),
)
def list_products(query: ProductQuery):
    """List products by page (X-Total-Count, Link) or by cursor (X-Next-Cursor); If-None-Match gives 304."""
    params = query.model_dump()
    pages: Representations = current_app.extensions[PAGES]
    cached = None
    if pages.size or "If-None-Match" in request.headers:
        etag = products.page_etag(**params)  # one small read: the table's change counter
        if unchanged := not_modified(etag):
            return unchanged
        cached = pages.get(etag)
    if cached is None:
        page = products.list_products(**params)
        cached = replace(page, items=[]), ProductList.model_validate(as_dicts(page.items)).model_dump_json()
        if page.etag:
            pages.put(page.etag, cached, cached[1])
    page, body = cached
    headers = {"Link": pagination_links(page, query)}
    if page.total is not None:
        headers["X-Total-Count"] = str(page.total)
    if page.truncated:
        headers["X-Search-Truncated"] = "true"
    if page.next_cursor:
        headers["X-Next-Cursor"] = page.next_cursor
    return with_validator(json_response(body, headers=headers), page.etag)


@bp.get(
    "/products/<product_id:product_id>",
    responses={200: ProductOut, 404: ErrorOut},
    openapi_extensions=response_headers(200, "ETag", "Cache-Control", not_modified=True),
)
def get_product(path: ProductPath):
    """Get one product with its ETag (for If-Match on update; If-None-Match gives 304)."""
    row = products.read_product_or_404(path.product_id)
    etag = etag_of(row.version)
    if unchanged := not_modified(etag):
        return unchanged
    body = ProductOut.model_validate(row).model_dump_json()
    return with_validator(json_response(body), etag)


# Each write answers on the seed's path (the contract the SPA uses) and on the conventional REST
# path: the same view, rules, authentication and rate limit; the alias only has its own endpoint name.
ALIAS = "The conventional REST path: the same operation as `{seed}`."
CREATE = {
    "responses": {201: ProductOut, 409: ErrorOut, **PROTECTED},
    "security": SIGNED_IN,
    "openapi_extensions": response_headers(201, "ETag", "Location", sometimes=("Idempotent-Replayed",)),
}
UPDATE = {
    "responses": {200: ProductOut, 403: ErrorOut, 404: ErrorOut, 412: ErrorOut, **PROTECTED},
    "security": SIGNED_IN,
    "openapi_extensions": {**response_headers(200, "ETag"), **request_headers("If-Match")},
}
DELETE = {
    "responses": {200: MessageOut, 403: ErrorOut, 404: ErrorOut, 412: ErrorOut, 401: ErrorOut},
    "security": SIGNED_IN,
    "openapi_extensions": request_headers("If-Match"),
}


@bp.post("/products/create", **CREATE)
@bp.post("/products", endpoint="create_product_rest", description=ALIAS.format(seed="POST /products/create"), **CREATE)
@require_auth
def create_product(body: ProductIn, header: IdempotencyHeader):
    """Create a product owned by the caller (send an Idempotency-Key to make retries safe)."""
    created = products.create_product(
        owner=current_identity(), data=body.model_dump(), idempotency_key=header.idempotency_key
    )
    product = created.product
    headers = {"Location": url_for("products.get_product", product_id=product["id"])}
    if created.replayed:
        headers["Idempotent-Replayed"] = "true"
    return with_etag(
        json_response(ProductOut.model_validate(product).model_dump_json(), 201, headers), product["version"]
    )


@bp.put("/products/<product_id:product_id>/update", **UPDATE)
@bp.put(
    "/products/<product_id:product_id>",
    endpoint="update_product_rest",
    description=ALIAS.format(seed="PUT /products/{product_id}/update"),
    **UPDATE,
)
@bp.patch(
    "/products/<product_id:product_id>",
    endpoint="patch_product_rest",
    description="Updates are partial (any subset of the fields): the same operation as "
    "`PUT /products/{product_id}/update`.",
    **UPDATE,
)
@require_auth
def update_product(path: ProductPath, body: ProductUpdate):
    """Update a product (owner or admin); send If-Match with its ETag to avoid lost updates."""
    product = products.update_product(
        product_id=path.product_id,
        identity=current_identity(),
        changes=body.model_dump(exclude_unset=True),
        expected_etags=_if_match(),
        actor=current_actor(),
    )
    return with_etag(json_response(ProductOut.model_validate(product).model_dump_json()), product.version)


@bp.delete("/products/<product_id:product_id>/delete", **DELETE)
@bp.delete(
    "/products/<product_id:product_id>",
    endpoint="delete_product_rest",
    description=ALIAS.format(seed="DELETE /products/{product_id}/delete"),
    **DELETE,
)
@require_auth
def delete_product(path: ProductPath):
    """Delete a product (owner or admin)."""
    products.delete_product(
        product_id=path.product_id, identity=current_identity(), expected_etags=_if_match(), actor=current_actor()
    )
    return json_response({"message": "The product was deleted."})
