from app.models.idempotency import IdempotencyKey
from app.models.product import Product
from app.models.stats import ProductStats
from app.models.user import User

__all__ = ["IdempotencyKey", "Product", "ProductStats", "User"]
