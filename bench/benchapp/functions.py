"""What the benchmarks configure as dumbwaiter functions."""

from __future__ import annotations

from typing import Any


def trivial() -> int:
    """The cheapest function there is: the busy-tick benchmarks time the rest."""
    return 42


def report(rows: int = 85) -> list[dict[str, Any]]:
    """A value shaped like a small report; 85 rows pickle to about 4 KB."""
    return [
        {
            "id": i,
            "customer": f"customer-{i:05d}",
            "orders": i * 7 % 113,
            "revenue": round(i * 1234.5678 % 99991, 2),
            "region": ("north", "south", "east", "west")[i % 4],
        }
        for i in range(rows)
    ]
