from app.models.audit import AuditRecord
from app.models.idempotency import IdempotencyKey
from app.models.product import Product
from app.models.session import BrowserSession
from app.models.stats import ProductStats
from app.models.user import User

__all__ = ["AuditRecord", "BrowserSession", "IdempotencyKey", "Product", "ProductStats", "User"]
