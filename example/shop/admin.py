from django.contrib import admin

from shop.models import Order


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ["created", "customer", "amount"]
    search_fields = ["customer"]
    date_hierarchy = "created"
