"""``/dashboard`` in a real browser: Debian's headless Chromium, driven by Playwright, on a
3-member cluster under light load (issue 15).

It checks what an operator must see: three members and exactly one leader, a latency line
with points for each follower, and a key written during the test in the key browser. The
screenshot it takes is saved beside the test's files (and, with ``COORD_DASHBOARD_SHOT`` set,
to that path: docs/dashboard.png was made so)."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path

from cluster.clusterlib import Cluster
from playwright.sync_api import Route, sync_playwright
from support import CoordProc, require_binary

from coord import Client

#: Chromium as root in a closed network (see the machine notes): no sandbox, no background
#: connections, a fresh profile.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_dashboard_shows_members_latency_and_keys(tmp_path: Path) -> None:
    chromium = require_binary("chromium")
    cluster = Cluster(tmp_path, 3, timings=()).start()  # etcd's timings: a stable leader
    stop = threading.Event()
    errors: list[str] = []
    profile = tempfile.mkdtemp(prefix="coord-chromium-")

    def light_load() -> None:
        with Client([m.endpoint for m in cluster.members]) as c:
            i = 0
            while not stop.wait(0.05):
                c.put(f"/load/{i % 20}", str(i))
                i += 1

    worker = threading.Thread(target=light_load)
    worker.start()
    try:
        leader = cluster.wait_leader()
        follower = next(m for m in cluster.members if m is not leader)
        ids = {f"{m.id:x}" for m in cluster.members}
        with Client(leader.endpoint) as c:
            c.put("/dashboard-test/hello", "world")
        with sync_playwright() as p:
            browser = p.chromium.launch_persistent_context(
                profile,
                executable_path=chromium,
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1280, "height": 900},
            )
            try:
                page = browser.new_page()
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.on(
                    "console",
                    lambda m: errors.append(m.text) if m.type == "error" else None,
                )
                page.goto(f"http://{follower.endpoint}/dashboard")
                page.wait_for_function(
                    "document.querySelectorAll('#members [data-member-id]').length === 3",
                    timeout=20_000,
                )
                shown = page.eval_on_selector_all(
                    "#members [data-member-id]", "rows => rows.map(r => r.dataset.memberId)"
                )
                assert set(shown) == ids
                page.wait_for_function(
                    "document.querySelectorAll('#members [data-role=\"leader\"]').length === 1",
                    timeout=20_000,
                )
                leader_row = page.get_attribute("#members [data-role='leader']", "data-member-id")
                assert leader_row == f"{leader.id:x}"
                # the leader-latency chart: a line with points for each follower
                page.wait_for_function(
                    """() => {
                        const chart = '#latency-chart [data-follower-id]';
                        const lines = document.querySelectorAll(chart);
                        return lines.length === 2 &&
                            [...lines].every(l => Number(l.dataset.points) >= 5);
                    }""",
                    timeout=30_000,
                )
                lines = page.eval_on_selector_all(
                    "#latency-chart [data-follower-id]", "ls => ls.map(l => l.dataset.followerId)"
                )
                assert set(lines) == ids - {f"{leader.id:x}"}
                # the key browser finds the key written above
                page.fill("#key-search", "/dashboard-test/")
                page.press("#key-search", "Enter")
                page.wait_for_selector("[data-key='/dashboard-test/hello']", timeout=20_000)
                page.click("[data-key='/dashboard-test/hello']")
                page.wait_for_function("document.body.innerText.includes('world')", timeout=20_000)
                shot = tmp_path / "dashboard.png"
                page.screenshot(path=str(shot), full_page=True)
                assert shot.stat().st_size > 10_000
                if os.environ.get("COORD_DASHBOARD_SHOT"):
                    shutil.copy(shot, os.environ["COORD_DASHBOARD_SHOT"])
            finally:
                browser.close()
        assert not errors, errors
    finally:
        stop.set()
        worker.join()
        cluster.stop()
        shutil.rmtree(profile, ignore_errors=True)


def test_dashboard_asks_for_a_login_and_sends_the_token(tmp_path: Path) -> None:
    """With auth enabled the page must log in. coord has no auth yet (issue 16), so the
    browser's requests are answered as etcd answers them with auth on: 401 (gRPC code 16)
    without a token, a token from /v3/auth/authenticate for the right password; with the
    token, requests reach the real server. The page must show its login form, report a
    wrong password, and then send the token with every request."""
    chromium = require_binary("chromium")
    server = CoordProc(tmp_path)
    profile = tempfile.mkdtemp(prefix="coord-chromium-")
    seen: list[str | None] = []
    errors: list[str] = []

    def guarded(route: Route) -> None:
        auth = route.request.headers.get("authorization")
        seen.append(auth)
        if auth == "tok-1":
            route.continue_()
        else:
            route.fulfill(status=401, json={"error": "etcdserver: invalid auth token", "code": 16})

    def authenticate(route: Route) -> None:
        body = route.request.post_data_json
        if body == {"name": "root", "password": "pw"}:
            route.fulfill(json={"header": {}, "token": "tok-1"})
        else:
            wrong = "etcdserver: authentication failed, invalid user ID or password"
            route.fulfill(status=400, json={"error": wrong, "message": wrong, "code": 3})

    try:
        with sync_playwright() as p:
            browser = p.chromium.launch_persistent_context(
                profile, executable_path=chromium, headless=True, args=CHROMIUM_ARGS
            )
            try:
                page = browser.new_page()
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.route("**/dashboard/api/cluster", guarded)
                page.route("**/v3/kv/range", guarded)
                page.route("**/v3/auth/authenticate", authenticate)
                page.goto(f"http://{server.endpoint}/dashboard")
                page.wait_for_selector("#login", state="visible", timeout=20_000)
                page.fill("#login-user", "root")
                page.fill("#login-password", "wrong")
                page.click("#login button[type=submit]")
                page.wait_for_function(
                    "document.getElementById('login-msg').textContent.includes('invalid')",
                    timeout=20_000,
                )
                assert page.is_visible("#login")
                page.fill("#login-password", "pw")
                page.click("#login button[type=submit]")
                page.wait_for_selector("#login", state="hidden", timeout=20_000)
                page.wait_for_selector("#members [data-role='leader']", timeout=20_000)
                assert seen[0] is None  # the first poll had no token
                first = seen.index("tok-1")
                assert set(seen[first:]) == {"tok-1"}  # from the login on, every request has it
            finally:
                browser.close()
        assert not errors, errors
    finally:
        server.stop()
        shutil.rmtree(profile, ignore_errors=True)
