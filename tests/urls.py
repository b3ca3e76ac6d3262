from django.contrib import admin
from django.urls import include, path

urlpatterns = [path("admin/", admin.site.urls)]

# Views that read values, sync and async (test_serializers.py, test_async.py).
urlpatterns.append(path("values/", include("tests.views")))
