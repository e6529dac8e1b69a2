"""Product rules: listing, lookup with rights, and changes with optimistic locking."""

from sqlalchemy import func, or_, select
from sqlalchemy.orm.exc import StaleDataError

from app.errors import Forbidden, NotFound, PreconditionFailed
from app.extensions import db
from app.models import Product
from app.services.paging import Page
from app.services.users import Identity

EDITABLE_FIELDS = ("name", "description", "price", "quantity")


def _filtered(*, q: str | None, user_id: str | None):
    stmt = select(Product)
    if user_id is not None:
        stmt = stmt.where(Product.user_id == user_id)
    if q:
        stmt = stmt.where(
            or_(Product.name.icontains(q, autoescape=True), Product.description.icontains(q, autoescape=True))
        )
    return stmt


def list_products(*, page: int, per_page: int, sort: str, q: str | None = None, user_id: str | None = None) -> Page:
    """One page and the total: two queries whatever the table size."""
    stmt = _filtered(q=q, user_id=user_id)
    column = getattr(Product, sort.lstrip("-"))
    descending = sort.startswith("-")
    order = [column.desc(), Product.id.desc()] if descending else [column.asc(), Product.id.asc()]
    if column is Product.id:
        order = order[:1]
    items = db.session.scalars(stmt.order_by(*order).limit(per_page).offset((page - 1) * per_page)).all()
    total = db.session.scalar(select(func.count()).select_from(stmt.subquery()))
    return Page(items=list(items), total=total, page=page, per_page=per_page)


def get_product_or_404(product_id: int) -> Product:
    product = db.session.get(Product, product_id)
    if product is None:
        raise NotFound(f"Product {product_id} was not found.")
    return product


def ensure_can_edit(product: Product, identity: Identity) -> None:
    """Only the owner or an admin may change or delete a product."""
    if product.user_id != identity.user.user_id and not identity.is_admin:
        raise Forbidden("Only the product's owner or an admin can change it.")


def _check_version(product: Product, expected_etags) -> None:
    if expected_etags is not None and not expected_etags.contains(product.etag):
        raise PreconditionFailed()


def create_product(*, owner: Identity, data: dict) -> Product:
    fields = {key: data[key] for key in EDITABLE_FIELDS if key in data}
    product = Product(**fields, user_id=owner.user.user_id)
    db.session.add(product)
    db.session.commit()
    return product


def update_product(*, product: Product, changes: dict, expected_etags=None) -> Product:
    """Apply editable fields only; a concurrent writer makes this fail with 412, never overwrite."""
    _check_version(product, expected_etags)
    fields = {key: changes[key] for key in EDITABLE_FIELDS if key in changes}
    if not any(getattr(product, key) != value for key, value in fields.items()):
        return product
    for key, value in fields.items():
        setattr(product, key, value)
    try:
        db.session.commit()
    except StaleDataError:
        db.session.rollback()
        raise PreconditionFailed() from None
    return product


def delete_product(*, product: Product, expected_etags=None) -> None:
    _check_version(product, expected_etags)
    db.session.delete(product)
    try:
        db.session.commit()
    except StaleDataError:
        db.session.rollback()
        raise PreconditionFailed() from None
