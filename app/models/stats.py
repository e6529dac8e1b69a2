from sqlalchemy import BigInteger, CheckConstraint, Integer
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db

# PostgreSQL sessions write slot pg_backend_pid() % SLOTS: concurrent writers lock different rows.
SLOTS = 16


class ProductStats(db.Model):
    """Slots whose sums are the product count and a change counter, kept by database triggers (migration 0008).

    Counting a large table is a full scan on both SQLite and PostgreSQL; the unfiltered list's
    X-Total-Count sums `total` instead, so its cost does not grow with the table. `changes`
    grows with every committed INSERT, UPDATE and DELETE of products: its sum is the
    listings' validator (app/services/products.py). Only the sums mean anything: a slot's
    total goes negative when its session deletes what others inserted.
    """

    __tablename__ = "product_stats"
    __table_args__ = (CheckConstraint(f"id >= 0 AND id < {SLOTS}", name="slot"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    total: Mapped[int] = mapped_column(BigInteger, nullable=False)
    changes: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
