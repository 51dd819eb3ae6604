"""The compiled start_response check and head renderer give the same plans, bytes and errors
as the Python ones.

Plans from ``check_start_response`` and plans built by hand with what it would
refuse (wider str, str subclasses, lists for tuples), in every body mode, kept
alive or not, HTTP/1.0 or 1.1, with and without the app's Date and Server, go
through ``response.python_render_head`` (the definition, and what
SHAREDSOCK_PURE_PYTHON=1 runs) and the C ``render_head``; random statuses and headers,
valid and not, through both ``check_start_response``.
"""

from __future__ import annotations

import random

import pytest
import test_accelerator

from sharedsock import speedups
from sharedsock.http import response as rsp
from sharedsock.http.response import CHUNKED, CLOSE, LENGTH, ResponseHeadError, ResponsePlan

pytestmark = pytest.mark.usefixtures("_needs_the_accelerator")
_needs_the_accelerator = test_accelerator._needs_the_accelerator


class Text(str):
    pass


STATUSES = ["200 OK", "404 Not Found", "204 No Content", "299 Caf\xe9", "200 \u2603", Text("200 OK"), "", 200]
NAMES = ["Content-Type", "X-A", "Set-Cookie", "Caf\xe9", "\u2603", Text("X-B"), 7]
VALUES = ["text/plain", "", "a=1; Path=/", "caf\xe9", "\xff", "\u2603", Text("v"), b"bytes", None]
SERVERS = ["sharedsock", "", "\xe9", "\u2603", Text("s")]
MODES = [LENGTH, CHUNKED, CLOSE]


def render(render_head, args: tuple) -> tuple[str, object]:
    try:
        return "bytes", render_head(*args)
    except Exception as exc:  # the same exception, whatever it is, is what is compared
        return type(exc).__name__, str(exc)


def same(args: tuple) -> None:
    for _ in range(3):  # the Date line may tick over between the two calls
        compiled, python = render(rsp.render_head, args), render(rsp.python_render_head, args)
        if compiled == python:
            return
    assert compiled == python, args


def test_the_compiled_renderer_is_the_one_in_use():
    assert rsp.render_head is speedups.compiled.render_head
    assert rsp.render_head is not rsp.python_render_head


@pytest.mark.parametrize("mode", MODES)
def test_checked_plans_render_the_same(mode):
    apps = [
        ("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")]),
        ("404 Not Found", []),
        ("204 No Content", [("X-A", "1")]),
        ("200 OK", [("Date", "Mon, 01 Jan 2024 00:00:00 GMT"), ("Server", "app/1")]),
        ("200 OK", [("Connection", "close"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]),
        ("200 OK", [("X-Latin", "caf\xe9")]),
        ("201 Created", [("Location", "/x")] * 70),  # more headers than the C side takes itself
    ]
    for status, headers in apps:
        plan = rsp.check_start_response(status, headers)
        for keep_alive in (True, False):
            for server in SERVERS[:3]:
                same((plan, mode, keep_alive, server))
                for http10 in (False, True):
                    same((plan, mode, keep_alive, server, http10))


def test_random_plans_render_the_same_or_fail_the_same():
    rng = random.Random(9110)
    for _ in range(20000):
        headers: list = []
        for _ in range(rng.randint(0, 4)):
            item = (rng.choice(NAMES), rng.choice(VALUES))
            roll = rng.random()
            headers.append(list(item) if roll < 0.03 else item + ("x",) if roll < 0.06 else item)
        plan = ResponsePlan(rng.choice(STATUSES), 200, headers if rng.random() > 0.02 else tuple(headers),
                            None, False, rng.random() < 0.3, rng.random() < 0.3)
        args = (plan, rng.choice(MODES + [3, 2**70, "1"]), rng.choice([True, False, 0, 1]), rng.choice(SERVERS))
        if rng.random() < 0.5:
            args += (rng.choice([True, False, 0]),)
        same(args)


def test_keyword_calls_render_the_same():
    plan = rsp.check_start_response("200 OK", [("Content-Length", "0")])
    assert rsp.render_head(plan, LENGTH, True, "s", http10=True) == \
        rsp.python_render_head(plan, LENGTH, True, "s", True)
    assert rsp.render_head(plan=plan, mode=CLOSE, keep_alive=True, server="") == \
        rsp.python_render_head(plan, CLOSE, True, "")
    with pytest.raises(TypeError):
        rsp.render_head(plan, LENGTH, True, "s", colour=1)


def test_a_wide_value_is_refused_as_in_python():
    plan = ResponsePlan("200 OK", 200, [("X-Snow", "\u2603")], None, False)
    with pytest.raises(ResponseHeadError, match="latin-1"):
        rsp.render_head(plan, LENGTH, True, "sharedsock")


def test_bad_arguments_raise_instead_of_crashing():
    render_head = speedups.compiled.render_head
    plan = rsp.check_start_response("200 OK", [])
    with pytest.raises(TypeError):
        render_head(plan, LENGTH, True)
    with pytest.raises(AttributeError):
        render_head(object(), LENGTH, True, "s")
    with pytest.raises(TypeError):
        speedups.compiled.response_setup(None, None, 1, 2)


class Plan(ResponsePlan):
    __slots__ = ()


def test_plans_read_from_their_slots_or_asked_render_the_same():
    plan = rsp.check_start_response("200 OK", [("Content-Length", "2"), ("Server", "app")])
    assert type(plan) is ResponsePlan
    same((plan, LENGTH, True, "sharedsock"))
    sub = Plan("404 Not Found", 404, [("X-A", "b")], None, False, True, False)
    same((sub, CHUNKED, True, "sharedsock"))
    for name in ("status", "headers", "has_date", "has_server"):
        unset = ResponsePlan("200 OK", 200, [], None, False)
        delattr(unset, name)
        with pytest.raises(AttributeError, match=name):
            rsp.render_head(unset, LENGTH, True, "sharedsock")
        same((unset, LENGTH, True, "sharedsock"))


class TwoFields:
    __slots__ = ("status", "headers")


class WithDict:
    pass


class Extended(ResponsePlan):
    __slots__ = ("extra",)


@pytest.mark.parametrize("cls", [TwoFields, WithDict, Extended, int])
def test_a_plan_class_the_extension_cannot_fill_is_refused(cls):
    """A field added to ResponsePlan in Python alone must stop the build being used, not be left unset."""
    with pytest.raises(TypeError):
        speedups.compiled.check_setup(rsp.python_check_start_response, cls, {}, {}, frozenset())
    plan = rsp.check_start_response("200 OK", [])  # the refused setup changed nothing
    assert type(plan) is ResponsePlan and plan_fields(plan) == plan_fields(
        rsp.python_check_start_response("200 OK", []))


def test_pure_python_forced_uses_the_python_ones():
    code = ("import sharedsock.http.response as r; print(r.render_head is r.python_render_head,"
            " r.check_start_response is r.python_check_start_response)")
    assert test_accelerator.python_prints(code, SHAREDSOCK_PURE_PYTHON="1") == "True True"


def plan_fields(plan: ResponsePlan) -> tuple:
    return (plan.status, plan.status_code, plan.headers, type(plan.headers), plan.content_length,
            plan.app_wants_close, plan.has_date, plan.has_server, plan.may_have_body)


def check(check_start_response, status, headers) -> tuple:
    try:
        return "plan", plan_fields(check_start_response(status, headers))
    except Exception as exc:
        return type(exc).__name__, str(exc)


CHECK_STATUSES = ["200 OK", "204 No Content", "304 Not Modified", "101 Switching", "404 Not Found",
                  "200", "20 OK", "999 X", "200 Caf\xe9", "200 \u2603", Text("200 OK"), b"200 OK", None]
CHECK_ITEMS = [("Content-Type", "text/plain"), ("Content-Length", "13"), ("Content-Length", "0013"),
               ("Content-Length", "0"), ("Content-Length", "999999999999999999"),
               ("Content-Length", "9223372036854775808"), ("Content-Length", "0" * 30 + "7"),
               ("Content-Length", "123456789012345678901234567890"),
               ("content-length", "7"), ("Content-Length", " 5 "), ("Content-Length", ""),
               ("Content-Length", "\u0663"), ("Content-Length", "-1"), ("Content-Length", "1_0"),
               ("Date", "x"), ("Server", "app"), ("server", "b"), ("Connection", "close"),
               ("Connection", "keep-alive"), ("Transfer-Encoding", "chunked"), ("Keep-Alive", "1"),
               ("Set-Cookie", "a=1"), ("X-Caf\xe9", "v"), ("X-A", "caf\xe9"), ("X-A", "\u2603"),
               ("X-A", "a\r\nb"), ("Bad Name", "v"), (Text("X-B"), "v"), ("X-A", Text("v")),
               ("X-A", 1), ("X-A", ["unhashable"]), ["X-A", "list"], ("X-A",), ("X-A", "v", "w")]


def test_start_response_checks_agree_with_the_python_ones():
    assert rsp.check_start_response is speedups.compiled.check_start_response
    rng = random.Random(3333)
    for _ in range(30000):
        status = rng.choice(CHECK_STATUSES)
        headers: object = [rng.choice(CHECK_ITEMS) for _ in range(rng.randint(0, 5))]
        roll = rng.random()
        if roll < 0.02:
            headers = tuple(headers)  # type: ignore[arg-type]
        elif roll < 0.03:
            headers = None
        # Twice: the first call may fill the caches the second one finds things in.
        for _ in range(2):
            assert check(rsp.check_start_response, status, headers) == \
                check(rsp.python_check_start_response, status, headers), (status, headers)


def test_keyword_checks_agree():
    headers = [("Content-Length", "3")]
    assert plan_fields(rsp.check_start_response(status="200 OK", headers=headers)) == \
        plan_fields(rsp.python_check_start_response("200 OK", headers))
    with pytest.raises(TypeError):
        rsp.check_start_response("200 OK")
