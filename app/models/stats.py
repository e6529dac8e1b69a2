from sqlalchemy import BigInteger, CheckConstraint, Integer
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db


class ProductStats(db.Model):
    """One row: how many products exist, kept exact by database triggers (migration 0002).

    Counting a large table is a full scan on both SQLite and PostgreSQL; the unfiltered list's
    X-Total-Count reads this row instead, so its cost does not grow with the table.
    """

    __tablename__ = "product_stats"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    total: Mapped[int] = mapped_column(BigInteger, nullable=False)
