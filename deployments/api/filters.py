"""Filters of the deployments API."""

from __future__ import annotations

import django_filters
from django.db.models import QuerySet

from deployments.models import Deployment, Instance, Release


def _by_env_ref(queryset: QuerySet[Deployment], name: str, value: str) -> QuerySet[Deployment]:
    service, _, slug = value.partition("/")
    prefix = name.rsplit("environment", 1)[0]
    return queryset.filter(
        **{f"{prefix}environment__service__slug": service, f"{prefix}environment__slug": slug}
    )


class DeploymentFilter(django_filters.FilterSet):
    environment = django_filters.CharFilter(method=_by_env_ref, help_text="service/env")
    # distinct=False: the filter is on the row itself; DISTINCT over JSON columns costs 10x.
    status = django_filters.MultipleChoiceFilter(choices=Deployment.Status.choices, distinct=False)
    release = django_filters.CharFilter(field_name="release__version")
    service = django_filters.CharFilter(field_name="environment__service__slug")

    class Meta:
        model = Deployment
        fields = ["environment", "status", "strategy", "kind", "release", "service"]


class InstanceFilter(django_filters.FilterSet):
    environment = django_filters.CharFilter(method=_by_env_ref, help_text="service/env")

    class Meta:
        model = Instance
        fields = ["environment", "slot", "state"]


class ReleaseFilter(django_filters.FilterSet):
    service = django_filters.CharFilter(field_name="service__slug")

    class Meta:
        model = Release
        fields = ["service", "version", "ci_status"]
