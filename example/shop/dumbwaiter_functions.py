"""
The functions the example's DUMBWAITER_FUNCTION_LIST names.

Each one is a plain function that returns plain, picklable data. None of them
knows it runs under dumbwaiter: that is the point, any function a project
already has can be scheduled the same way.
"""

import os
import shutil
import time
from decimal import Decimal
from typing import Any

from django.db.models import Avg, Count, Sum
from django.db.models.functions import TruncDate

from shop.models import Order

# SQLite sums decimals with trailing noise; results are money, so round them.
CENT = Decimal("0.01")


def order_totals() -> dict[str, Any]:
    totals = Order.objects.aggregate(
        count=Count("id"), revenue=Sum("amount"), average=Avg("amount")
    )
    return {
        "count": totals["count"],
        "revenue": (totals["revenue"] or Decimal(0)).quantize(CENT),
        "average": (totals["average"] or Decimal(0)).quantize(CENT),
    }


def top_customers(limit: int = 5) -> list[dict[str, Any]]:
    rows = (
        Order.objects.values("customer")
        .annotate(orders=Count("id"), revenue=Sum("amount"))
        .order_by("-revenue", "customer")[:limit]
    )
    return [{**row, "revenue": row["revenue"].quantize(CENT)} for row in rows]


def load_average() -> dict[str, float | int | None]:
    # os.getloadavg() raises OSError where the platform has no load average;
    # letting it propagate records a failed run instead of a made-up value.
    one, five, fifteen = os.getloadavg()
    return {
        "one_minute": round(one, 2),
        "five_minutes": round(five, 2),
        "fifteen_minutes": round(fifteen, 2),
        "cpus": os.cpu_count(),
    }


def disk_usage(path: str) -> dict[str, str | int | float]:
    usage = shutil.disk_usage(path)
    return {
        "path": path,
        "total": usage.total,
        "used": usage.used,
        "free": usage.free,
        "percent_used": round(100 * usage.used / usage.total, 1),
    }


def daily_revenue(days: int = 14, delay: float = 3) -> list[dict[str, Any]]:
    """
    Revenue per day for the latest `days` days that had orders, oldest first.

    `delay` stands in for a report that is genuinely expensive to build: the
    reason to compute it in the background rather than in a view.
    """
    time.sleep(delay)
    rows = (
        Order.objects.annotate(day=TruncDate("created"))
        .values("day")
        .annotate(orders=Count("id"), revenue=Sum("amount"))
        .order_by("-day")[:days]
    )
    report = [{**row, "revenue": row["revenue"].quantize(CENT)} for row in rows]
    report.reverse()
    return report
