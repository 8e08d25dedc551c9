"""Filters of the deployments API."""

from __future__ import annotations

import django_filters
from django.db.models import QuerySet

from deployments.models import Deployment, Environment, Instance, Release


def _by_env_ref(queryset: QuerySet[Deployment], name: str, value: str) -> QuerySet[Deployment]:
    service, _, slug = value.partition("/")
    prefix = name.rsplit("environment", 1)[0]
    return queryset.filter(
        **{f"{prefix}environment__service__slug": service, f"{prefix}environment__slug": slug}
    )


class StrictFilterSet(django_filters.FilterSet):
    """Rejects values the schema does not allow instead of ignoring them: an empty or unknown
    choice, a boolean other than true/false (django-filter would return everything)."""

    def is_valid(self) -> bool:
        valid = super().is_valid()
        for name, f in self.filters.items():
            if name not in self.data:
                continue
            values = self.data.getlist(name) if hasattr(self.data, "getlist") else [self.data[name]]
            if isinstance(f, django_filters.BooleanFilter):
                if any(v not in ("true", "false") for v in values):
                    self.form.add_error(
                        name if name in self.form.fields else None, f"{name}: must be true or false"
                    )
                    valid = False
            elif isinstance(f, django_filters.ChoiceFilter | django_filters.MultipleChoiceFilter):
                allowed = {str(c[0]) for c in f.extra.get("choices", [])}
                if allowed and any(v not in allowed for v in values):
                    self.form.add_error(
                        name if name in self.form.fields else None,
                        f"{name}: must be one of {sorted(allowed)}",
                    )
                    valid = False
        return valid


class EnvironmentFilter(StrictFilterSet):
    service = django_filters.CharFilter(field_name="service__slug")
    frozen = django_filters.BooleanFilter()

    class Meta:
        model = Environment
        fields = ["service", "frozen"]


class DeploymentFilter(StrictFilterSet):
    environment = django_filters.CharFilter(method=_by_env_ref, help_text="service/env")
    # distinct=False: the filter is on the row itself; DISTINCT over JSON columns costs 10x.
    status = django_filters.MultipleChoiceFilter(choices=Deployment.Status.choices, distinct=False)
    release = django_filters.CharFilter(field_name="release__version")
    service = django_filters.CharFilter(field_name="environment__service__slug")

    class Meta:
        model = Deployment
        fields = ["environment", "status", "strategy", "kind", "release", "service"]


class InstanceFilter(StrictFilterSet):
    environment = django_filters.CharFilter(method=_by_env_ref, help_text="service/env")

    class Meta:
        model = Instance
        fields = ["environment", "slot", "state"]


class ReleaseFilter(StrictFilterSet):
    service = django_filters.CharFilter(field_name="service__slug")

    class Meta:
        model = Release
        fields = ["service", "version", "ci_status"]
