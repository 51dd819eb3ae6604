"""Adds ``X-Served-By: <pid>`` to every response.

With several workers sharing one socket, this header is the easiest way to see
which process answered, including for redirects and API calls.
"""

import os
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse


def served_by(get_response: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    def middleware(request: HttpRequest) -> HttpResponse:
        response = get_response(request)
        response["X-Served-By"] = str(os.getpid())
        return response

    return middleware
