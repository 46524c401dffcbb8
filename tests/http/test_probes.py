"""``/livez`` and ``/readyz``: etcd 3.5.11+/3.6's probes (server/etcdserver/api/etcdhttp/
health.go; Debian's etcd 3.4 has neither, so only coord runs here). The failing side, a
member without quorum, is in test_health_cluster.py."""

from __future__ import annotations

import urllib.error
import urllib.request

from support import CoordProc, http_get


def get(server: CoordProc, path: str) -> tuple[int, str]:
    status, body = http_get(f"http://{server.endpoint}{path}", timeout=10)
    return status, body.decode()


def test_probes_pass_on_a_healthy_member(coord_server: CoordProc) -> None:
    assert get(coord_server, "/livez") == (200, "ok\n")
    assert get(coord_server, "/readyz") == (200, "ok\n")
    assert get(coord_server, "/livez?verbose") == (200, "[+]serializable_read ok\nok\n")
    assert get(coord_server, "/readyz?verbose") == (
        200,
        "[+]data_corruption ok\n[+]serializable_read ok\n[+]linearizable_read ok\n"
        "[+]non_learner ok\nok\n",
    )


def test_one_check_and_excluded_checks(coord_server: CoordProc) -> None:
    assert get(coord_server, "/readyz/linearizable_read?verbose") == (
        200,
        "[+]linearizable_read ok\nok\n",
    )
    assert get(
        coord_server, "/readyz?verbose&exclude=linearizable_read&exclude=data_corruption"
    ) == (200, "[+]serializable_read ok\n[+]non_learner ok\nok\n")
    assert get(coord_server, "/readyz/no_such_check")[0] == 404
    assert get(coord_server, "/livez/linearizable_read")[0] == 404  # a readyz check only


def test_probes_answer_get_only(coord_server: CoordProc) -> None:
    req = urllib.request.Request(f"http://{coord_server.endpoint}/readyz", data=b"", method="POST")
    try:
        urllib.request.urlopen(req, timeout=5).close()
        status = 200
    except urllib.error.HTTPError as e:
        status = e.code
        e.close()
    assert status == 405
