import pytest

from conftest import http_get, pid_of

pytestmark = pytest.mark.smoke  # also run on every Python and framework version of .ci/run


def test_serves_from_every_worker(start_server, start_method):
    server = start_server(["--bind", "127.0.0.1:0", "--workers", "2", "--start-method", start_method,
                           "testapp:app"], workers=2)
    booted = set(server.booted_pids())
    assert len(booted) == 2
    seen = set()
    for _ in range(200):
        status, _, body = http_get(server, "/")
        assert status == 200
        seen.add(pid_of(body))
        if seen == booted:
            break
    assert seen == booted
    assert server.stop() == 0
