import dumbwaiter
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def index(request: HttpRequest) -> HttpResponse:
    # Every value was computed by a tick, so this page costs a few indexed
    # reads however slow the functions behind it are.
    context = {
        "totals": dumbwaiter.get_value("orders-total"),
        "customers": dumbwaiter.get_value("top-customers"),
        "daily": dumbwaiter.get_value("daily-revenue"),
        "load": dumbwaiter.get_value("load-average"),
        "disk": dumbwaiter.get_value("disk-usage"),
        "results": [
            (spec["name"], dumbwaiter.get_result(spec["name"]))
            for spec in settings.DUMBWAITER_FUNCTION_LIST
        ],
    }
    return render(request, "shop/index.html", context)
