"""
Fill the shop with a few hundred orders so the example has something to
compute. A fixed seed and a fixed date range make every database built from
these migrations identical, which keeps the numbers on the example page
comparable between machines.
"""

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.apps.registry import Apps
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

SEED = 20240601
ORDER_COUNT = 400
FIRST_DAY = datetime(2024, 5, 1, tzinfo=UTC)
DAYS = 60

# Weights skew the orders towards a few customers so "top customers" has a
# clear answer.
CUSTOMERS = {
    "Acme Corporation": 9,
    "Globex": 7,
    "Initech": 6,
    "Umbrella Supplies": 4,
    "Stark Hardware": 4,
    "Wayne Logistics": 3,
    "Hooli": 3,
    "Vandelay Imports": 2,
    "Soylent Foods": 2,
    "Cyberdyne Parts": 1,
    "Tyrell Farms": 1,
    "Oscorp Labs": 1,
}


def create_orders(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    Order = apps.get_model("shop", "Order")
    rng = random.Random(SEED)
    names = list(CUSTOMERS)
    weights = list(CUSTOMERS.values())
    orders = []
    for _ in range(ORDER_COUNT):
        cents = rng.randint(500, 50_000)
        orders.append(
            Order(
                customer=rng.choices(names, weights)[0],
                amount=Decimal(cents) / 100,
                created=FIRST_DAY + timedelta(seconds=rng.randrange(DAYS * 86_400)),
            )
        )
    Order.objects.using(schema_editor.connection.alias).bulk_create(orders)


def delete_orders(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    # Only what create_orders could have made, so orders added by hand
    # afterwards survive a rollback of this migration.
    Order = apps.get_model("shop", "Order")
    Order.objects.using(schema_editor.connection.alias).filter(
        customer__in=list(CUSTOMERS),
        created__gte=FIRST_DAY,
        created__lt=FIRST_DAY + timedelta(days=DAYS),
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("shop", "0001_initial")]

    operations = [migrations.RunPython(create_orders, delete_orders)]
