"""Schema objects that exist on one database only, declared so both create_all and autogenerate skip them elsewhere."""

from sqlalchemy import Index

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


def _migration_only(name: str) -> bool:
    return any(name == table or name.startswith(f"{table}_") for table in MIGRATION_ONLY_TABLES)
