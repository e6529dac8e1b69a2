"""Schema objects that exist on one database only, declared so both create_all and autogenerate skip them elsewhere."""

from sqlalchemy import Index


def only_on(dialect: str, index: Index) -> Index:
    index.info["only_on"] = dialect
    return index.ddl_if(dialect=dialect)


def include_object_for(dialect: str):
    """Alembic's include_object hook: autogenerate ignores `ddl_if`, so it is told here."""

    def include_object(obj, name, type_, reflected, compare_to) -> bool:
        return getattr(obj, "info", {}).get("only_on", dialect) == dialect

    return include_object
