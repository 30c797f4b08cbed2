from django.contrib import admin
from django.urls import path

import taskmill.metrics

urlpatterns = [path("admin/", admin.site.urls), path("metrics/", taskmill.metrics.view)]
