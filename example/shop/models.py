from django.db import models
from django.utils import timezone


class Order(models.Model):
    customer = models.CharField(max_length=100)
    amount = models.DecimalField(max_digits=10, decimal_places=2)
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created"]
        indexes = [
            # The daily revenue report groups by day of `created`.
            models.Index(fields=["created"], name="shop_order_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.customer}: {self.amount} on {self.created:%Y-%m-%d}"
