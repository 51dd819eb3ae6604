"""With --threads above 1, a request finding the pool idle runs on the loop's own thread.

Handing it to an idle pool thread cost a wake-up, a context switch and an
interpreter-lock transfer each way. The loop's thread serves it instead, and a
stand-in thread takes the loop over when such a request turns out slow, so other
clients are not held up behind it and --threads still bounds the requests that
run at once. The app (apps/shed_app.py) blocks ``/block?NAME`` requests on gates
the test opens and names the thread that served each request.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time

import pytest
from test_load_shedding import Client, _start
from test_tls import https_get, request, tls_connect, urls
from tls_certs import make_certs

from conftest import DEADLINE, called, pid_of, process_alive, wait_for
from sharedsock.worker import STAND_IN_QUIET

# Long beside the stand-in's takeover (a few ms): a request the pool could run would be in
# the app by then.
NOT_STARTED = 1.0
TAKEOVER = "the stand-in takes over the loop"
PAUSES = 30
PAUSE = 0.02  # ten of the stand-in's polls


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


def _thread_of(response: tuple[int, dict, bytes]) -> str:
    status, _, body = response
    assert status == 200, response
    match = re.search(rb"thread=(\S+)", body)
    assert match, body
    return match.group(1).decode()


def _inline_now(server, client: Client | None = None) -> None:
    """Poll until a request runs on the loop's thread and no takeover began meanwhile.

    On a loaded machine even a trivial request can be paused past the takeover
    threshold, and then requests go to the pool for a while: wait that out.
    """
    def attempt() -> bool:
        before = server.log().count(TAKEOVER)
        served_by = _thread_of((client or Client(server)).get("/warm?probe"))
        return served_by == "MainThread" and server.log().count(TAKEOVER) == before

    wait_for(attempt, message="a request served on the loop's thread")


def test_a_request_finding_the_pool_idle_runs_on_the_loops_thread(start_server, gates, start_method):
    server = _start(start_server, gates, "--threads", "4", "--start-method", start_method)
    _inline_now(server, Client(server))  # kept alive
    _inline_now(server)  # accepted, then served


def _taken_over(server, gates, gate: str, slow: Client, other: Client) -> None:
    """A slow request served inline is taken over: the pool serves ``other`` meanwhile."""
    takeovers = server.log().count(TAKEOVER)
    slow.send(f"/block?{gate}")
    wait_for(lambda: called(gates, f"/block?{gate}"), message="the slow request in the app")
    # The loop's thread is in the app: the stand-in has taken the loop, and a pool thread serves.
    assert _thread_of(other.get(f"/warm?beside-{gate}")).startswith("sharedsock-pool-")
    wait_for(lambda: server.log().count(TAKEOVER) > takeovers, message="the takeover logged")
    gates.release(gate)
    assert _thread_of(slow.read()) == "MainThread"


def _threads_waiting_on_futex(pid: int) -> int:
    """Threads of ``pid`` blocked on a futex (a lock, an event, a condition variable)."""
    count = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/wchan") as wchan:
                count += wchan.read().startswith("futex")
        except FileNotFoundError:
            pass  # a thread that just ended
    return count


def test_a_slow_request_served_inline_holds_up_no_other_client(start_server, gates, start_method):
    gates.make("slow")
    server = _start(start_server, gates, "--threads", "2", "--start-method", start_method)
    slow, other = Client(server), Client(server)
    _inline_now(server, slow)
    _taken_over(server, gates, "slow", slow, other)
    # The loop's thread has the loop back; once the pause after a takeover is over, a
    # request finding the pool idle runs inline again.
    _inline_now(server, other)


def test_a_slow_request_after_a_quiet_spell_is_still_taken_over(start_server, gates, start_method):
    """After STAND_IN_QUIET without requests the stand-in sleeps; the next request wakes it."""
    gates.make("late")
    server = _start(start_server, gates, "--threads", "2", "--start-method", start_method)
    slow, other = Client(server), Client(server)
    worker = pid_of(slow.get("/warm?pid")[2])
    _inline_now(server, slow)
    _inline_now(server, other)
    # Asleep, the stand-in waits on a futex beside the two idle pool threads; polling, it
    # sleeps in nanosleep between polls.
    wait_for(lambda: _threads_waiting_on_futex(worker) >= 3, timeout=STAND_IN_QUIET + DEADLINE,
             message="the stand-in asleep after its quiet spell")
    _taken_over(server, gates, "late", slow, other)


def test_after_a_takeover_no_more_than_threads_requests_run_at_once(start_server, gates, start_method):
    gates.make("one", "two", "three")
    server = _start(start_server, gates, "--threads", "2", "--start-method", start_method)
    clients = [Client(server) for _ in range(3)]
    for n, client in enumerate(clients):
        assert client.get(f"/warm?{n}")[0] == 200
    _inline_now(server, clients[0])
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


def test_tls_handshakes_go_on_while_the_stand_in_has_the_loop(start_server, gates, certs):
    """The loop's thread alone drives handshakes: that is the stand-in's while it has the loop."""
    gates.make("slow")
    server = _start(start_server, gates, "--threads", "2", "--certfile", str(certs.server),
                    "--keyfile", str(certs.server_key))
    (url,) = urls(server)
    context = certs.client_context()
    with tls_connect(url, context) as slow:
        slow.sendall(request("/block?slow", close=False))
        wait_for(lambda: called(gates, "/block?slow"), message="the slow request in the app")
        status, _, body = https_get(url, context, "/warm?tls")  # a new client: a fresh handshake
        assert status == 200 and b"thread=sharedsock-pool-" in body
        gates.release("slow")


def test_a_drain_ends_on_time_while_an_inline_request_hangs(start_server, gates, start_method):
    """The stand-in has the loop when --graceful-timeout runs out: the worker exits from there."""
    gates.make("hang")
    server = _start(start_server, gates, "--threads", "2", "--graceful-timeout", "1",
                    "--start-method", start_method)
    client = Client(server)
    worker = pid_of(client.get("/warm?1")[2])
    _inline_now(server, client)
    client.send("/block?hang")
    wait_for(lambda: called(gates, "/block?hang"), message="the request in the app")
    wait_for(lambda: TAKEOVER in server.log(), message="the takeover logged")
    server.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: not process_alive(worker), timeout=DEADLINE, message="the worker gone")
    assert server.proc.wait(timeout=DEADLINE) == 0
    assert "did not finish in time; killing it" not in server.log()


def test_a_pause_of_the_whole_worker_is_no_reason_to_take_over(start_server, gates, start_method):
    """Stopped and continued (as by a busy host), the worker finds its inline request still
    running, but the request got no CPU meanwhile: it is not slow, and stays inline.

    A loaded machine may still delay a request past the stand-in's next poll, and that
    takeover is by design: only a takeover spanning a pause would be this mistake.
    """
    server = _start(start_server, gates, "--threads", "2", "--start-method", start_method)
    client = Client(server)
    worker = pid_of(client.get("/warm?1")[2])
    _inline_now(server, client)
    served = 0
    busy = threading.Event()

    def hammer() -> None:
        nonlocal served
        busy.set()
        while busy.is_set():
            assert client.get("/spin?0.2")[0] == 200
            served += 1

    hammering = threading.Thread(target=hammer)
    hammering.start()
    try:
        busy.wait()
        for _ in range(PAUSES):
            os.kill(worker, signal.SIGSTOP)
            time.sleep(PAUSE)  # the stimulus: the worker stands still this long
            os.kill(worker, signal.SIGCONT)
            before = served
            wait_for(lambda before=before: served > before + 1, message="requests served after the pause")
    finally:
        os.kill(worker, signal.SIGCONT)
        busy.clear()
        hammering.join(DEADLINE)
    waits = [float(ms) for ms in re.findall(r"run inline for (?:over )?([\d.]+) ms", server.log())]
    assert not [ms for ms in waits if ms >= PAUSE * 1000 / 2], waits
