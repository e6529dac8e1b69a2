"""Small builders for test data and headers."""

from decimal import Decimal

from app.extensions import db
from app.models import Product, User


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def make_user(user_id: str = "auth0|alice", **fields) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        user = User(user_id=user_id, email=fields.pop("email", f"{user_id.split('|')[-1]}@example.com"), **fields)
        db.session.add(user)
        db.session.commit()
    return user


def make_product(owner: str = "auth0|alice", **fields) -> Product:
    make_user(owner)
    values = {"name": "Lamp", "description": "A desk lamp", "price": Decimal("19.99"), "quantity": 3, **fields}
    product = Product(user_id=owner, **values)
    db.session.add(product)
    db.session.commit()
    return product
