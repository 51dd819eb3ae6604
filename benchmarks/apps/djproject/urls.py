from django.urls import path

from . import views

urlpatterns = [
    path("json", views.json_view),
    path("template", views.template_view),
]
