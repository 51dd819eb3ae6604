"""The guestbook page (GET shows, POST signs) and its JSON twin.

Both report ``os.getpid()`` so a visitor can see which sharedsock worker
answered; GREETING is what the reload test edits.
"""

import os

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from .forms import EntryForm
from .models import Entry

GREETING = "Welcome"
LATEST = 20


@require_http_methods(["GET", "HEAD", "POST"])
def index(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = EntryForm(request.POST)
        if form.is_valid():
            form.save()
            return redirect("guestbook:index")  # post/redirect/get: a reload does not sign twice
    else:
        form = EntryForm()
    return render(request, "guestbook/index.html", {
        "title": settings.GUESTBOOK_TITLE,
        "greeting": GREETING,
        "form": form,
        "entries": Entry.objects.all()[:LATEST],
        "pid": os.getpid(),
    })


@require_GET
def entries_json(request: HttpRequest) -> JsonResponse:
    entries = [e.as_dict() for e in Entry.objects.all()[:LATEST]]
    return JsonResponse({"greeting": GREETING, "pid": os.getpid(), "count": Entry.objects.count(),
                         "entries": entries})
