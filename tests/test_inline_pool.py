"""With --threads above 1, a request finding the pool idle runs on the loop's own thread.

Handing it to an idle pool thread cost a wake-up, a context switch and an
interpreter-lock transfer each way. The loop's thread serves it instead, and a
stand-in thread takes the loop over when such a request turns out slow, so other
clients are not held up behind it and --threads still bounds the requests that
run at once. The app (apps/shed_app.py) blocks ``/block?NAME`` requests on gates
the test opens and names the thread that served each request.
"""

from __future__ import annotations

import re
import time

from test_load_shedding import Client, _start

from conftest import called, wait_for

# Long beside the stand-in's takeover (a few ms): a request the pool could run would be in
# the app by then.
NOT_STARTED = 1.0


def _thread_of(response: tuple[int, dict, bytes]) -> str:
    status, _, body = response
    assert status == 200, response
    match = re.search(rb"thread=(\S+)", body)
    assert match, body
    return match.group(1).decode()


def test_a_request_finding_the_pool_idle_runs_on_the_loops_thread(start_server, gates, start_method):
    server = _start(start_server, gates, "--threads", "4", "--start-method", start_method)
    client = Client(server)
    threads = {_thread_of(client.get(f"/warm?{n}")) for n in range(20)}
    assert threads == {"MainThread"}
    fresh = {_thread_of(Client(server).get("/warm?new")) for _ in range(5)}  # accepted, then served
    assert fresh == {"MainThread"}


def test_a_slow_request_served_inline_holds_up_no_other_client(start_server, gates, start_method):
    gates.make("slow")
    server = _start(start_server, gates, "--threads", "2", "--start-method", start_method)
    slow, other = Client(server), Client(server)
    assert _thread_of(slow.get("/warm?1")) == "MainThread"
    slow.send("/block?slow")
    wait_for(lambda: called(gates, "/block?slow"), message="the slow request in the app")
    # The loop's thread is in the app: the stand-in has taken the loop, and a pool thread serves.
    assert _thread_of(other.get("/warm?2")).startswith("sharedsock-pool-")
    server.wait_log(r"the stand-in takes over the loop")
    gates.release("slow")
    assert _thread_of(slow.read()) == "MainThread"
    # The loop's thread has the loop back; once the pause after a takeover is over, a
    # request finding the pool idle runs inline again.
    wait_for(lambda: _thread_of(other.get("/warm?3")) == "MainThread", message="inline again")


def test_after_a_takeover_no_more_than_threads_requests_run_at_once(start_server, gates, start_method):
    gates.make("one", "two", "three")
    server = _start(start_server, gates, "--threads", "2", "--start-method", start_method)
    clients = [Client(server) for _ in range(3)]
    for n, client in enumerate(clients):
        assert client.get(f"/warm?{n}")[0] == 200
    clients[0].send("/block?one")  # inline, on the loop's thread
    wait_for(lambda: called(gates, "/block?one"), message="the first request in the app")
    clients[1].send("/block?two")  # the stand-in hands it to the pool
    wait_for(lambda: called(gates, "/block?two"), message="the second request in the app")
    clients[2].send("/block?three")
    wait_for(clients[2].delivered, message="the third request delivered")
    time.sleep(NOT_STARTED)  # the point of the test: a third thread would have taken it by now
    assert not called(gates, "/block?three")
    gates.release("one")
    wait_for(lambda: called(gates, "/block?three"), message="the third request once one is done")
    assert _thread_of(clients[0].read()) == "MainThread"
    gates.release("two")
    gates.release("three")
    assert clients[1].read()[0] == 200
    assert clients[2].read()[0] == 200
