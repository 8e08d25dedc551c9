"""The project's URLs plus ``/bare/deployments/``: the same page from a plain Django view."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import include, path


def bare_deployments(request: HttpRequest) -> JsonResponse:
    """The baseline: no DRF, no auth, no serializer; the same rows and fields as the API page."""
    from deployments.models import Deployment

    qs = Deployment.objects.filter(status=request.GET.get("status", "running"))
    page = qs.select_related("environment__service", "release", "previous_release", "created_by").order_by(
        "-created_at", "-id"
    )[:50]
    results = [
        {
            "id": d.pk,
            "environment": f"{d.environment.service.slug}/{d.environment.slug}",
            "release": d.release.version,
            "previous_release": d.previous_release.version if d.previous_release else None,
            "kind": d.kind,
            "rollback_of": d.rollback_of_id,
            "strategy": d.strategy,
            "status": d.status,
            "status_reason": d.status_reason,
            "current_step": d.current_step,
            "step_total": len(d.plan),
            "current_step_title": d.plan[d.current_step]["title"] if d.current_step < len(d.plan) else "",
            "next_check_at": d.next_check_at.isoformat() if d.next_check_at else None,
            "created_by": d.created_by.get_username() if d.created_by else None,
            "reason": d.reason,
            "idempotency_key": d.idempotency_key,
            "created_at": d.created_at.isoformat(),
            "started_at": d.started_at.isoformat() if d.started_at else None,
            "finished_at": d.finished_at.isoformat() if d.finished_at else None,
        }
        for d in page
    ]
    return JsonResponse({"count": qs.count(), "results": results})


urlpatterns = [
    path("bare/deployments/", bare_deployments),
    path("", include("controlplane.urls")),
]
