"""A small Flask app: one JSON view and one Jinja template view."""

from flask import Flask, jsonify, render_template

app = Flask(__name__)

ITEMS = [{"id": n, "name": f"item <{n}>", "price": round(n * 1.25, 2), "in_stock": n % 3 != 0}
         for n in range(1, 21)]


@app.route("/json")
def json_view():
    return jsonify(message="Hello, World!", count=len(ITEMS), items=ITEMS[:5])


@app.route("/template")
def template_view():
    return render_template("page.html", title="Inventory", items=ITEMS)
