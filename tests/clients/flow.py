"""One flow through the Python client generated from the live document (docs/api.md shows how).

Written only from the docs: `python flow.py BASE_URL USER_TOKEN ADMIN_TOKEN`, with the client
generated as `dmarket_client` on the path. Type-checked with `mypy --strict` before it runs.
"""

import sys

from dmarket_client import AuthenticatedClient
from dmarket_client.api.admin import grant_admin, list_audit, list_users, revoke_admin
from dmarket_client.api.products import create_product, delete_product, get_product, list_products, update_product
from dmarket_client.api.users import get_me, my_audit
from dmarket_client.models import (
    AdminTargetByUserId,
    AuditList,
    ErrorOut,
    ListProductsSort,
    MyAuditList,
    ProductIn,
    ProductOut,
    ProductUpdate,
)


def main(base_url: str, user_token: str, admin_token: str) -> None:
    user = AuthenticatedClient(base_url=base_url, token=user_token)
    admin = AuthenticatedClient(base_url=base_url, token=admin_token)

    listed = list_products.sync_detailed(client=user, per_page=5, sort=ListProductsSort.NAME_DESC)
    assert listed.status_code == 200 and isinstance(listed.parsed, list), "list"
    total = int(listed.headers["X-Total-Count"])

    created = create_product.sync_detailed(client=user, body=ProductIn(name="Desk lamp", price=19.99, quantity=3))
    product = created.parsed
    assert created.status_code == 201 and isinstance(product, ProductOut), f"create: {created.status_code}"
    assert product.price == 19.99 and product.description is None, "created fields"
    again = list_products.sync_detailed(client=user)
    assert int(again.headers["X-Total-Count"]) == total + 1, "the total counts the new product"

    read = get_product.sync_detailed(product.id, client=user)
    assert read.status_code == 200 and isinstance(read.parsed, ProductOut), "get"
    etag = read.headers["ETag"]

    changes = ProductUpdate(price="24.50")
    updated = update_product.sync_detailed(product.id, client=user, body=changes, if_match=etag)
    assert updated.status_code == 200 and isinstance(updated.parsed, ProductOut), f"update: {updated.status_code}"
    assert updated.parsed.price == 24.5, "updated price"
    stale = update_product.sync_detailed(product.id, client=user, body=changes, if_match=etag)
    assert stale.status_code == 412 and isinstance(stale.parsed, ErrorOut), "a stale If-Match is 412"
    assert stale.parsed.code == "precondition_failed", "412 code"

    deleted = delete_product.sync_detailed(product.id, client=user, if_match=updated.headers["ETag"])
    assert deleted.status_code == 200, f"delete: {deleted.status_code}"

    missing = get_product.sync_detailed(product.id, client=user)
    assert missing.status_code == 404 and isinstance(missing.parsed, ErrorOut), "a deleted product is 404"
    assert missing.parsed.code == "not_found", "404 code"

    invalid = create_product.sync_detailed(client=user, body=ProductIn(name="Lamp", price=1, quantity=-1))
    error = invalid.parsed
    assert invalid.status_code == 422 and isinstance(error, ErrorOut), "a negative quantity is 422"
    assert isinstance(error.details, list) and error.details[0].field == "quantity", "422 details name the field"

    me = get_me.sync(client=user)
    assert me is not None and not isinstance(me, ErrorOut) and me.user_id.startswith("auth0|"), "me"

    granted = grant_admin.sync_detailed(client=admin, body=AdminTargetByUserId(user_id=me.user_id))
    assert granted.status_code == 200, f"grant admin: {granted.status_code}"
    users = list_users.sync_detailed(client=admin, q=me.user_id.split("|")[1])
    assert users.status_code == 200 and int(users.headers["X-Total-Count"]) >= 1, "list users"
    revoked = revoke_admin.sync_detailed(client=admin, body=AdminTargetByUserId(user_id=me.user_id))
    assert revoked.status_code == 200, f"revoke admin: {revoked.status_code}"
    refused = list_users.sync_detailed(client=user)
    assert refused.status_code == 403 and isinstance(refused.parsed, ErrorOut), "a user is not an admin"
    trail = list_audit.sync(client=admin, target=me.user_id, per_page=10)
    assert isinstance(trail, AuditList), "audit trail"
    actions = [(record.action, record.outcome.value) for record in trail.records]
    assert actions == [("admin.revoke", "done"), ("admin.grant", "done")], f"audit trail: {actions}"
    mine = my_audit.sync(client=user)
    assert isinstance(mine, MyAuditList) and len(mine.records) == 2, "my audit"
    print("python flow: ok")


if __name__ == "__main__":
    main(*sys.argv[1:4])
