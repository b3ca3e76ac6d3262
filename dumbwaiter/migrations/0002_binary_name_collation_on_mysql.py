"""Compare function names byte for byte on MySQL and MariaDB.

Their default collations fold case, accents and trailing spaces, so "Total"
and "total" would share one state row there while the settings check (and
every other database) treats them as two functions. The other backends
already compare names exactly; this migration does nothing on them.
"""

from django.db import migrations

TABLES = ("dumbwaiter_functionstate", "dumbwaiter_historyentry")


def _modify(schema_editor, collation: str) -> None:
    if schema_editor.connection.vendor != "mysql":
        return
    for table in TABLES:
        schema_editor.execute(
            f"ALTER TABLE {schema_editor.quote_name(table)} MODIFY name "
            f"varchar(191) CHARACTER SET utf8mb4 COLLATE {collation} NOT NULL"
        )


def binary(apps, schema_editor) -> None:
    # A NO PAD collation: utf8mb4_bin still ignores trailing spaces.
    connection = schema_editor.connection
    if connection.vendor != "mysql":
        return
    if connection.mysql_is_mariadb:
        collation = "utf8mb4_nopad_bin"
    elif connection.mysql_version >= (8, 0, 17):
        collation = "utf8mb4_0900_bin"
    else:
        collation = "utf8mb4_bin"
    _modify(schema_editor, collation)


def folding(apps, schema_editor) -> None:
    _modify(schema_editor, "utf8mb4_general_ci")


class Migration(migrations.Migration):
    dependencies = [("dumbwaiter", "0001_initial")]

    # MySQL cannot roll DDL back, and refuses DDL inside a transaction.
    operations = [migrations.RunPython(binary, folding, atomic=False, elidable=False)]
