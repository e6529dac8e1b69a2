from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, Numeric, String, Text, column, func, literal_column
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.ddl import only_on
from app.models.types import UTCDateTime, utcnow

# pg_trgm ends a word at every character that is not a letter or digit, so its trigrams never span
# two words. The phrase indexes (migration 0009) read the text with these made a letter: the
# separators people type inside a term (phrases, "t-shirt", "24/7", "3.5", lists).
PHRASE_SEPARATORS = " -,./"


def joined_words(expression):
    """`expression` with PHRASE_SEPARATORS made `q`, so its trigrams cross words: what the phrase indexes hold.

    The constants are inlined, not bound: a statement prepared with them as parameters would
    not be the indexed expression.
    """
    return func.translate(
        expression, literal_column(f"'{PHRASE_SEPARATORS}'"), literal_column(f"'{'q' * len(PHRASE_SEPARATORS)}'")
    )


def etag_of(version: int) -> str:
    """A product's ETag (unquoted) is its version: a plain row from a read gives the same one."""
    return str(version)


class Product(db.Model):
    """A product offered by its owner; `version` drives ETags and optimistic locking."""

    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint("price > 0", name="price_positive"),
        CheckConstraint("quantity >= 0", name="quantity_not_negative"),
        # The list endpoint filters by owner and sorts by these columns.
        Index("ix_products_user_id_id", "user_id", "id"),
        Index("ix_products_name_id", "name", "id"),
        Index("ix_products_price_id", "price", "id"),
        Index("ix_products_created_at_id", "created_at", "id"),
        # `q=` is a substring search (ILIKE '%term%'): only trigrams can index it (PostgreSQL only).
        *(
            only_on(
                "postgresql",
                Index(f"ix_products_{c}_trgm", c, postgresql_using="gin", postgresql_ops={c: "gin_trgm_ops"}),
            )
            for c in ("name", "description")
        ),
        # A phrase's trigrams span its words: indexed over the text with separators made letters.
        *(
            only_on(
                "postgresql",
                Index(
                    f"ix_products_{c}_phrase_trgm",
                    joined_words(column(c)).label(f"{c}_joined"),
                    postgresql_using="gin",
                    postgresql_ops={f"{c}_joined": "gin_trgm_ops"},
                ),
            )
            for c in ("name", "description")
        ),
        # Never reuse an id on SQLite, so an old ETag can never match a new product.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    price: Mapped[Decimal] = mapped_column(Numeric(12, 2), nullable=False)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    user_id: Mapped[str] = mapped_column(String(255), ForeignKey("users.user_id", ondelete="CASCADE"), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow, nullable=False)

    __mapper_args__ = {"version_id_col": version}

    @property
    def etag(self) -> str:
        return etag_of(self.version)

    def __repr__(self) -> str:
        return f"<Product {self.id} {self.name!r}>"
