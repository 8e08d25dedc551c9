"""``/api/v1/``: the controlplane's own endpoints plus each app's router."""

from django.urls import include, path
from rest_framework.routers import DefaultRouter

from controlplane.api.views import ApiTokenViewSet, AuditEntryViewSet

router = DefaultRouter()
router.register("audit-log", AuditEntryViewSet, basename="audit-log")
router.register("tokens", ApiTokenViewSet, basename="token")

urlpatterns = [
    path("", include("deployments.api.urls")),
    path("", include("incidents.api.urls")),
    path("", include("backups.api.urls")),
    path("", include(router.urls)),
]
