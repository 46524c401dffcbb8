"""README.md and the docs run as pasted: every Python and shell block, in order, twice in a row.

A newcomer starts the server with the README's first command and pastes the blocks that follow
into a terminal or a Python file. This test does the same, in a fresh working directory, with
two changes: the fixed ports the README names (2379 and 2380 for the first server,
2479/2480, the cluster's 12379...) are mapped to free ones, so the test never races for ports,
and paths under /tmp move into the test's directory. The first
block's ``coord-server`` is started with its default data dir (``./default.coord``) and only
its listen URLs given; the block's ``pip install``/``tox`` lines are skipped (this test is
part of that ``tox`` run).

Shell lines run one at a time with bash; a line marked "until Ctrl-C" runs in the background
like a second terminal, and the next line starts once what it serves answers. Every
background process gets Ctrl-C (SIGINT) at the end of a pass and must exit. The TLS example
needs ``ca.pem``, ``server.pem``/``server-key.pem`` and ``client.pem``/``client-key.pem``
in the working directory, which the README asks the reader to make: the test makes them with
trustme. Then the whole README runs a second time against the same server and data: examples
that leave state behind (a lock key inside its own prefix, an unfinished queue item) fail there.

The Python blocks of a docs page (:data:`DOC_PAGES`) are one session: the page's first block
creates ``client`` and later blocks use it, as in a REPL. They run as one script, twice, against
a server of their own.
"""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from support import free_port, free_port_block, require_binary, wait_for

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
#: Docs pages with code to paste (docs/http.md's three-host TLS block needs three hosts: its
#: page runs only its first block, the curl tour).
DOC_PAGES = {"docs/client.md": None, "docs/recipes.md": None, "docs/http.md": 1}
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
#: Lines that keep running (a server, a streaming watch): started in the background.
BACKGROUND = "until Ctrl-C"


@dataclass(frozen=True)
class Block:
    page: str
    lang: str
    code: str
    line: int  # where the block starts in its page

    def __str__(self) -> str:
        return f"{self.page}:{self.line} ({self.lang})"


def code_blocks(page: str) -> list[Block]:
    text = (ROOT / page).read_text()
    return [
        Block(page, m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1)
        for m in FENCE.finditer(text)
        if m.group(1) in ("python", "sh")
    ]


def shell_lines(code: str) -> list[str]:
    """The commands of a shell block: continuations joined, comment-only lines dropped."""
    joined = code.replace("\\\n", " ")
    return [
        line.strip()
        for line in joined.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def shell_segments(code: str) -> list[tuple[bool, str]]:
    """A shell block as (background, script) pieces in order: each command marked "until
    Ctrl-C" on its own, and the lines between them as one script (shell variables and
    multi-line quoted arguments work within it)."""
    pieces: list[tuple[bool, str]] = []
    current: list[str] = []
    for line in code.replace("\\\n", " ").splitlines():
        if BACKGROUND in line and not line.lstrip().startswith("#"):
            if shell_lines("\n".join(current)):
                pieces.append((False, "\n".join(current)))
            current = []
            pieces.append((True, line.split("#", 1)[0].strip()))
        else:
            current.append(line)
    if shell_lines("\n".join(current)):
        pieces.append((False, "\n".join(current)))
    return pieces


class Session:
    """The newcomer's terminal: a working directory, port mapping and background processes."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.ports = {p: free_port() for p in (2379, 2380, 2479, 2480)}
        base = free_port_block(6)
        self.ports.update({12379 + i: base + i for i in range(6)})
        self.env = {
            **os.environ,
            "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
        }
        self.env.pop("PYTHONSAFEPATH", None)  # exactly what a user's shell has
        self.background: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        self.server: tuple[str, subprocess.Popen[bytes], Path] | None = None

    def localize(self, code: str) -> str:
        """The block with the README's ports mapped to free ones, and /tmp paths moved into
        this test's working directory."""

        def one(m: re.Match[str]) -> str:
            port = int(m.group(2))
            return m.group(1) + str(self.ports.get(port, port))

        code = re.sub(r"(127\.0\.0\.1:|--base-port )(\d+)", one, code)
        return re.sub(r"/tmp/(\S+)", lambda m: str(self.cwd / m.group(1)), code)

    def endpoint(self, readme_port: int) -> str:
        return f"127.0.0.1:{self.ports[readme_port]}"

    def start(self, command: str) -> subprocess.Popen[bytes]:
        out = self.cwd / f"background-{len(self.background)}.log"
        with out.open("wb") as log:  # the child writes to its own copy
            proc = subprocess.Popen(
                ["bash", "-c", command],
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.background.append((command, proc, out))
        return proc

    def run_shell(self, block: Block) -> None:
        for background, script in shell_segments(block.code):
            if background:
                proc = self.start(script)
                self._wait_serving(script, proc, self.background[-1][2], block)
                continue
            done = subprocess.run(
                ["bash", "-e", "-o", "pipefail", "-c", script],
                cwd=self.cwd,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert done.returncode == 0, (
                f"{block} failed ({done.returncode}):\n{script}\n{done.stdout}\n{done.stderr}"
            )

    def start_server(self, command: str, where: Block) -> subprocess.Popen[bytes]:
        """The README's first server (``command`` is ``coord-server``), on the mapped ports."""
        url, peer = f"http://{self.endpoint(2379)}", f"http://{self.endpoint(2380)}"
        full = (
            f"{command} --listen-client-urls {url} --advertise-client-urls {url}"
            f" --listen-peer-urls {peer} --initial-advertise-peer-urls {peer}"
        )
        proc = self.start(full)
        self._wait_serving(full, proc, self.background[-1][2], where)
        self.server = self.background.pop()  # it runs through both passes
        return proc

    def run(self, block: Block) -> None:
        local = Block(block.page, block.lang, self.localize(block.code), block.line)
        if block.lang == "python":
            self.run_python(local)
        else:
            self.run_shell(local)

    def run_python(self, block: Block) -> None:
        script = self.cwd / f"block-{block.line}.py"
        script.write_text(block.code)
        try:
            done = subprocess.run(
                [sys.executable, str(script)],
                cwd=self.cwd,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        except subprocess.TimeoutExpired as e:
            raise AssertionError(
                f"{block} did not finish within 60 s:\n{block.code}\n{e.stdout!r}\n{e.stderr!r}"
            ) from None
        assert done.returncode == 0, f"{block} failed:\n{block.code}\n{done.stdout}\n{done.stderr}"

    def _wait_serving(
        self, command: str, proc: subprocess.Popen[bytes], out: Path, where: Block
    ) -> None:
        """Wait (deadline) until what a background command serves answers."""

        def alive() -> None:
            if proc.poll() is not None:
                raise AssertionError(
                    f"{where}: `{command}` exited ({proc.returncode}):\n"
                    f"{out.read_text(errors='replace')}"
                )

        if command.startswith("coord-server cluster"):

            def listed() -> bool:
                alive()
                return "ETCDCTL_ENDPOINTS=" in out.read_text(errors="replace")

            wait_for(listed, timeout=30, what="the cluster launcher's endpoints")
            line = next(x for x in out.read_text().splitlines() if "ETCDCTL_ENDPOINTS=" in x)
            urls = ["http://" + e for e in line.split("=", 1)[1].split(",")]
        elif command.startswith("coord-server"):
            urls = re.findall(r"--listen-client-urls (\S+)", command)
        else:  # a streaming client: it answers once its first line is out

            def printed() -> bool:
                alive()
                return out.stat().st_size > 0

            wait_for(printed, timeout=30, what=f"the first output of `{command}`")
            return
        for url in urls:

            def healthy(url: str = url) -> bool:
                alive()
                return self._health(url)

            wait_for(healthy, timeout=60, what=f"{url}/health")

    def _health(self, url: str) -> bool:
        context = None
        if url.startswith("https://"):
            context = ssl.create_default_context(cafile=str(self.cwd / "ca.pem"))
            context.load_cert_chain(self.cwd / "client.pem", self.cwd / "client-key.pem")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2, context=context) as resp:
                return int(resp.status) == 200
        except OSError:
            return False

    def stop_server(self) -> None:
        """Ctrl-C for the first server too (at the end of the test)."""
        assert self.server is not None
        self.background.append(self.server)
        self.server = None
        self.interrupt_background()

    def interrupt_background(self) -> None:
        """Ctrl-C in every background terminal; each must stop."""
        for _, proc, _ in self.background:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
        for command, proc, out in self.background:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise AssertionError(f"`{command}` ignored Ctrl-C:\n{out.read_text()}") from None
            if command.startswith("coord-server"):
                assert proc.returncode in (0, -signal.SIGINT, 130), (
                    f"`{command}` exited with {proc.returncode} on Ctrl-C:\n{out.read_text()}"
                )
        self.background.clear()


def _make_certificates(cwd: Path) -> None:
    """The files the README's TLS example names, from one CA."""
    ca = trustme.CA(organization_name="coord README")
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("client.coord.test", common_name="client")
    ca.cert_pem.write_to_path(str(cwd / "ca.pem"))
    server.cert_chain_pems[0].write_to_path(str(cwd / "server.pem"))
    server.private_key_pem.write_to_path(str(cwd / "server-key.pem"))
    client.cert_chain_pems[0].write_to_path(str(cwd / "client.pem"))
    client.private_key_pem.write_to_path(str(cwd / "client-key.pem"))


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    require_binary("etcdctl")
    require_binary("curl")
    s = Session(tmp_path)
    try:
        yield s
    finally:
        for _, proc, _ in s.background + ([s.server] if s.server else []):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def test_readme_runs_as_pasted_twice(session: Session, tmp_path: Path) -> None:
    blocks = code_blocks("README.md")
    first = blocks[0]
    assert first.lang == "sh"
    assert shell_lines(first.code)[0].startswith("pip install . && "), (
        "the README must open with the install-and-start command"
    )
    start = shell_lines(first.code)[0].split("&&", 1)[1].split("#", 1)[0].strip()
    assert start == "coord-server"
    session.start_server(start, first)
    assert (tmp_path / "default.coord").is_dir()  # the data dir the README promises
    _make_certificates(tmp_path)
    for _ in range(2):
        for block in blocks[1:]:
            session.run(block)
        session.interrupt_background()
    session.stop_server()


@pytest.mark.parametrize("page", sorted(DOC_PAGES))
def test_docs_page_runs_as_pasted_twice(page: str, session: Session) -> None:
    """A page's Python blocks are one session (one script, as typed into one REPL); its shell
    blocks run one after the other, like the README's."""
    blocks = code_blocks(page)[: DOC_PAGES[page]]
    assert blocks
    if blocks[0].lang == "python":
        assert all(b.lang == "python" for b in blocks), f"{page} mixes Python and shell"
        blocks = [
            Block(
                page, "python", "".join(f"# ---- {b}\n{b.code}\n" for b in blocks), blocks[0].line
            )
        ]
    session.start_server("coord-server", blocks[0])
    for _ in range(2):
        for block in blocks:
            session.run(block)
        session.interrupt_background()
    session.stop_server()
