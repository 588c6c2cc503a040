from django.contrib import admin
from django.urls import path

from worker_project import views

urlpatterns = [
    path("health", views.health, name="health"),
    path("ready", views.ready, name="ready"),
    path("metrics", views.metrics, name="metrics"),
    path("admin/", admin.site.urls),
]
