from app.models.product import Product
from app.models.user import User

__all__ = ["Product", "User"]
