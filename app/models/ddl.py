"""Schema objects that exist on one database only, declared so both create_all and autogenerate skip them elsewhere."""

import re
import warnings
from contextlib import contextmanager

from sqlalchemy import Index, MetaData

# SQLite's FTS5 search index (migration 0004), queried by app/services/products.py.
SQLITE_SEARCH_TABLE = "products_search"
# Tables only migrations know, with the shadow tables FTS5 keeps beside them.
MIGRATION_ONLY_TABLES = (SQLITE_SEARCH_TABLE,)


def only_on(dialect: str, index: Index) -> Index:
    index.info["only_on"] = dialect
    return index.ddl_if(dialect=dialect)


def include_object_for(dialect: str):
    """Alembic's include_object hook: autogenerate ignores `ddl_if`, so it is told here."""

    def include_object(obj, name, type_, reflected, compare_to) -> bool:
        if type_ == "table" and reflected and compare_to is None and _migration_only(name):
            return False
        return getattr(obj, "info", {}).get("only_on", dialect) == dialect

    return include_object


@contextmanager
def other_databases_indexes_unreflected(metadata: MetaData, dialect: str):
    """Autogenerate warns that SQLite cannot reflect expression indexes before include_object
    drops them: for another database's indexes that is no news, so it is not said."""
    names = [
        index.name
        for table in metadata.tables.values()
        for index in table.indexes
        if index.info.get("only_on", dialect) != dialect
    ]
    with warnings.catch_warnings():
        for name in names:
            message = f"autogenerate skipping metadata-specified expression-based index {re.escape(repr(name))}"
            warnings.filterwarnings("ignore", message=message, category=UserWarning)
        yield


def _migration_only(name: str) -> bool:
    return any(name == table or name.startswith(f"{table}_") for table in MIGRATION_ONLY_TABLES)
