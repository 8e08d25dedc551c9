"""Forms that let operators run an incident from the admin through the same services as the API."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import get_user_model

from incidents.models import Incident


class IncidentDeclareForm(forms.ModelForm):
    class Meta:
        model = Incident
        fields = ["title", "severity", "description", "impact_summary"]


class IncidentChangeForm(forms.ModelForm):
    hand_off_to = forms.ModelChoiceField(
        queryset=get_user_model().objects.filter(is_active=True, is_staff=True).order_by("username"),
        required=False,
        help_text="Hand command to this person (the current commander's term ends now).",
    )
    handoff_note = forms.CharField(required=False, max_length=500)

    class Meta:
        model = Incident
        fields = ["title", "description", "impact_summary"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["hand_off_to"].label_from_instance = lambda u: u.get_username()  # type: ignore[attr-defined]
