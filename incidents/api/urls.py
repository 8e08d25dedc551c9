from django.urls import path
from rest_framework.routers import SimpleRouter

from incidents.api import views

router = SimpleRouter()
router.register("incidents", views.IncidentViewSet, basename="incident")
router.register("severity-policies", views.SeverityPolicyViewSet, basename="severity-policy")
router.register("timeline-events", views.TimelineEventViewSet, basename="timeline-event")
router.register("postmortems", views.PostMortemViewSet, basename="postmortem")
router.register("action-items", views.ActionItemViewSet, basename="action-item")

urlpatterns = [
    path(
        "integrations/alertmanager/",
        views.AlertmanagerWebhookView.as_view(),
        name="alertmanager-webhook",
    ),
    *router.urls,
]
