"""etcd-style data-driven interaction tests: ``testdata/*.txt``.

Each block is one command line, a ``----`` line and the expected output; blocks are separated
by blank lines.  Run ``pytest tests/raft/test_datadriven.py --rewrite`` to regenerate the expected
outputs after an intended behaviour change (then review the diff).

Commands::

    cluster voters=1,2,3 [learners=4] [spares=5] [pre-vote=false] [check-quorum=false]
    campaign <id>                 tick-election <id> | tick-heartbeat <id> [n]
    stabilize                     (prints every message sent, etcd format)
    propose <id> <data>           propose-conf-change <id> <add|add-learner|remove>=<node>
    isolate <id> | heal           crash <id> | restart <id>
    compact <id>                  transfer-leadership from=<id> to=<id>
    read-index <id> <ctx>         read-states
    raft-state                    raft-log <id>
"""

from __future__ import annotations

from pathlib import Path

import pytest
from raft.raft_harness import Cluster, fmt_entry

from coord.server.raft import ConfChange, ConfChangeType, ProposalDropped

TESTDATA = Path(__file__).parent / "testdata"


def parse(text: str) -> list[tuple[str, str]]:
    blocks: list[tuple[str, str]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if not line or line.startswith("#"):
            i += 1
            continue
        cmd = line
        assert lines[i + 1].strip() == "----", f"line {i + 2}: expected ----"
        i += 2
        out: list[str] = []
        while i < len(lines) and lines[i].strip():
            out.append(lines[i])
            i += 1
        blocks.append((cmd, "\n".join(out)))
    return blocks


class Env:
    def __init__(self) -> None:
        self.c: Cluster | None = None
        self.out: list[str] = []
        self.read_states: list[str] = []

    @property
    def cluster(self) -> Cluster:
        assert self.c is not None, "run `cluster ...` first"
        return self.c

    def run(self, cmd: str) -> str:
        self.out = []
        words = cmd.split()
        name, args = words[0], words[1:]
        kv = dict(a.split("=", 1) for a in args if "=" in a)
        pos = [a for a in args if "=" not in a]
        getattr(self, "cmd_" + name.replace("-", "_"))(pos, kv)
        return "\n".join(self.out) if self.out else "ok"

    def _ids(self, s: str) -> list[int]:
        return [int(x) for x in s.split(",") if x]

    def cmd_cluster(self, pos: list[str], kv: dict[str, str]) -> None:
        self.c = Cluster(
            self._ids(kv.get("voters", "1")),
            learners=self._ids(kv.get("learners", "")),
            spares=self._ids(kv.get("spares", "")),
            pre_vote=kv.get("pre-vote", "true") == "true",
            check_quorum=kv.get("check-quorum", "true") == "true",
            fixed_timeouts=True,
            log=lambda line: self.out.append(line),
        )

    def cmd_campaign(self, pos: list[str], kv: dict[str, str]) -> None:
        self.cluster.node(int(pos[0])).campaign()

    def cmd_stabilize(self, pos: list[str], kv: dict[str, str]) -> None:
        self.cluster.stabilize()

    def _tick(self, pos: list[str], per: int) -> None:
        n = int(pos[1]) if len(pos) > 1 else 1
        self.cluster.tick(int(pos[0]), n * per)

    def cmd_tick_election(self, pos: list[str], kv: dict[str, str]) -> None:
        self._tick(pos, self.cluster.cfg["election_tick"])

    def cmd_tick_heartbeat(self, pos: list[str], kv: dict[str, str]) -> None:
        self._tick(pos, self.cluster.cfg["heartbeat_tick"])

    def cmd_propose(self, pos: list[str], kv: dict[str, str]) -> None:
        try:
            self.cluster.node(int(pos[0])).propose(pos[1].encode())
        except ProposalDropped as exc:
            self.out.append(f"ProposalDropped: {exc}")

    def cmd_propose_conf_change(self, pos: list[str], kv: dict[str, str]) -> None:
        types = {
            "add": ConfChangeType.ADD_NODE,
            "add-learner": ConfChangeType.ADD_LEARNER_NODE,
            "remove": ConfChangeType.REMOVE_NODE,
        }
        ((k, v),) = kv.items()
        try:
            self.cluster.node(int(pos[0])).propose_conf_change(ConfChange(types[k], int(v)))
        except ProposalDropped as exc:
            self.out.append(f"ProposalDropped: {exc}")

    def cmd_isolate(self, pos: list[str], kv: dict[str, str]) -> None:
        self.cluster.isolate(int(pos[0]))

    def cmd_heal(self, pos: list[str], kv: dict[str, str]) -> None:
        self.cluster.heal()

    def cmd_crash(self, pos: list[str], kv: dict[str, str]) -> None:
        self.cluster.crash(int(pos[0]))

    def cmd_restart(self, pos: list[str], kv: dict[str, str]) -> None:
        self.cluster.restart(int(pos[0]))

    def cmd_compact(self, pos: list[str], kv: dict[str, str]) -> None:
        self.cluster.compact(int(pos[0]))

    def cmd_transfer_leadership(self, pos: list[str], kv: dict[str, str]) -> None:
        self.cluster.node(int(kv["from"])).transfer_leader(int(kv["to"]))

    def cmd_read_index(self, pos: list[str], kv: dict[str, str]) -> None:
        c = self.cluster
        c.reads_issued[pos[1].encode()] = c.max_committed_now()
        c.node(int(pos[0])).read_index(pos[1].encode())

    def cmd_read_states(self, pos: list[str], kv: dict[str, str]) -> None:
        for ctx, idx in sorted(self.cluster.reads_done.items()):
            self.out.append(f"{ctx.decode()}: index {idx}")

    def cmd_raft_state(self, pos: list[str], kv: dict[str, str]) -> None:
        c = self.cluster
        for id_ in sorted(c.nodes):
            n = c.nodes[id_]
            if n is None:
                self.out.append(f"{id_}: down")
                continue
            cs = n.raft.trk.conf_state()
            role = "Voter" if id_ in cs.voters else "Learner" if id_ in cs.learners else "NonMember"
            state = "State" + n.state.name.title().replace("_", "")
            self.out.append(
                f"{id_}: {state} ({role}) Term:{n.term} Lead:{n.lead} "
                f"Commit:{n.raft.raft_log.committed}"
            )

    def cmd_raft_log(self, pos: list[str], kv: dict[str, str]) -> None:
        log = self.cluster.node(int(pos[0])).raft.raft_log
        ents = log.slice(log.first_index(), log.last_index() + 1, None)
        if log.first_index() > 1:
            self.out.append(f"(compacted up to {log.first_index() - 1})")
        self.out.extend(fmt_entry(e) for e in ents)


@pytest.mark.parametrize("path", sorted(TESTDATA.glob("*.txt")), ids=lambda p: p.stem)
def test_datadriven(path: Path, request: pytest.FixtureRequest) -> None:
    rewrite = bool(request.config.getoption("--rewrite"))
    env = Env()
    blocks = parse(path.read_text())
    got_blocks: list[tuple[str, str]] = []
    for cmd, want in blocks:
        got = env.run(cmd)
        got_blocks.append((cmd, got))
        if not rewrite:
            assert got == want, f"{path.name}: `{cmd}`\n--- want\n{want}\n--- got\n{got}"
    if rewrite:
        header = "".join(
            line + "\n" for line in path.read_text().splitlines() if line.startswith("#")
        )
        body = "\n\n".join(f"{cmd}\n----\n{out}" for cmd, out in got_blocks)
        path.write_text(header + ("\n" if header else "") + body + "\n")
