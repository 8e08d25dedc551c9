"""Page-number pagination with a client-chosen page size (bounded)."""

from __future__ import annotations

from rest_framework import pagination
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request


class PageNumberPagination(pagination.PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 500

    def get_page_size(self, request: Request) -> int | None:
        """A ``page_size`` that is not a positive integer is a 400, not silently ignored;
        a large one is capped at ``max_page_size``."""
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None or raw == "":
            return self.page_size
        if not raw.isdigit() or int(raw) < 1:
            raise ValidationError({self.page_size_query_param: ["must be a positive integer"]})
        return min(int(raw), self.max_page_size)
