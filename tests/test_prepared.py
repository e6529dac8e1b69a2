"""PreparedRead: the hottest reads skip SQLAlchemy's execution layer, and answer exactly what it would."""

from decimal import Decimal

import pytest
from sqlalchemy import bindparam, event, literal_column, select
from sqlalchemy.exc import DBAPIError

from app.extensions import db
from app.models import Product
from app.services.prepared import PreparedRead
from tests.factories import make_product

PRODUCT = Product.__table__
ONE = select(PRODUCT).where(PRODUCT.c.id == bindparam("product_id"))


def test_a_row_reads_as_sqlalchemy_reads_it(app):
    with app.app_context():
        product_id = make_product(price=Decimal("1234.50"), description=None).id
        expected = db.session.execute(ONE, {"product_id": product_id}).one()
        read = PreparedRead(ONE)
        for _ in range(2):  # the first read also learns the columns' converters
            row = read.first(product_id=product_id)
            assert row._fields == tuple(expected._fields) and tuple(row) == tuple(expected)
        assert isinstance(row.price, Decimal) and str(row.price) == "1234.50"
        assert row.created_at.tzinfo is not None and row.description is None


def test_no_row_is_none(app):
    with app.app_context():
        assert PreparedRead(ONE).first(product_id=1) is None


def test_a_failed_statement_raises_as_sqlalchemy_does_and_keeps_the_pool_usable(app):
    with app.app_context():
        broken = PreparedRead(select(literal_column("no_such_column")).select_from(PRODUCT))
        with pytest.raises(DBAPIError) as raised:
            broken.first()
        assert raised.value.connection_invalidated is False
        product_id = make_product().id
        assert PreparedRead(ONE).first(product_id=product_id).id == product_id


def test_the_connection_goes_back_to_the_pool_as_sqlalchemy_left_it(app):
    """On PostgreSQL the read runs in autocommit (no BEGIN/ROLLBACK round trips); the next user of
    the pooled connection, the ORM session say, must find it transactional again."""
    with app.app_context():
        product_id = make_product().id
        returned = []
        event.listen(db.engine, "checkin", lambda dbapi_connection, _record: returned.append(dbapi_connection))
        PreparedRead(ONE).first(product_id=product_id)
        assert db.session.connection().connection.dbapi_connection is returned[-1]  # the one the read used
        db.session.execute(PRODUCT.update().values(quantity=9))
        db.session.rollback()  # only undoable inside a transaction
        assert db.session.scalar(select(PRODUCT.c.quantity)) == 3
