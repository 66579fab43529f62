from django.urls import path

from tickets import views

urlpatterns = [path("tickets/similar/", views.similar)]
