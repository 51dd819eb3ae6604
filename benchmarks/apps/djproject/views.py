from django.http import JsonResponse
from django.shortcuts import render

ITEMS = [{"id": n, "name": f"item <{n}>", "price": round(n * 1.25, 2), "in_stock": n % 3 != 0}
         for n in range(1, 21)]


def json_view(request):
    return JsonResponse({"message": "Hello, World!", "count": len(ITEMS), "items": ITEMS[:5]})


def template_view(request):
    return render(request, "page.html", {"title": "Inventory", "items": ITEMS})
