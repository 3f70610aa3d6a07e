"""Communication cost: a strategy wrapper that counts every ArrayRecord byte and keeps a budget.

`CommCostStrategy` wraps any message-based Flower strategy. For each round it counts the
ArrayRecords of the messages the server sends (down) and of the replies it receives (up), for
training and evaluation separately, and writes `comm_report.json` after every phase, so a
stopped run still has its report.

Two sizes are kept per message: `bytes`, FlowerTune's definition (`ArrayRecord.count_bytes()`:
the serialized arrays, their NumPy headers and their key names), which is the entry's comm.
cost; and `tensor_bytes`, the tensors alone (elements x bytes per element), the analytic size.

The budget is checked before anything is sent: a training round whose messages, plus the
replies they will bring back (the same adapter per site), would pass the budget stops the run
with `CommBudgetExceeded`, its message naming the round and the sizes.
"""

import json
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from logging import ERROR, INFO
from pathlib import Path
from typing import Any

from medboard.errors import MedboardError
from medboard.federated.config import BYTES_PER_GB
from medboard.paths import atomic_write_text

REPORT_FILE = "comm_report.json"
PHASES = ("train", "evaluate")


class CommBudgetExceeded(MedboardError):
    """Sending the next messages would take the run past its communication budget."""


class SiteFailed(MedboardError):
    """A site answered a round with an error, or not at all: the run stops, naming it."""


# Flower's ErrorCode values (flwr.common.constant.ErrorCode), as words.
ERROR_NAMES = {
    1: "its ClientApp could not be loaded",
    2: "its ClientApp raised an exception",
    3: "the message was unavailable",
    4: "the reply expired",
    5: "the SuperLink declared the site unavailable (no heartbeat)",
    6: "a mod refused the message",
    7: "the app bundle was invalid",
    8: "its ClientApp crashed",
}


def site_failures(
    server_round: int, phase: str, sent: list[Any], replies: list[Any], sites: dict[int, int]
) -> str:
    """One line naming every site whose reply is an error or missing; empty if none.

    A site's own error (its ClientApp raised) comes from its node. The SuperLink's errors
    (NODE_UNAVAILABLE: no heartbeat) come from the SuperLink's node id and point at the sent
    message by `reply_to_message_id`; when that id is unknown, they are matched to the sites
    that sent nothing else.
    """

    def name(node: int) -> str:
        return f"site {sites[node]}" if node in sites else f"node {node}"

    targets = {m.metadata.message_id: m.metadata.dst_node_id for m in sent}
    ok = {r.metadata.src_node_id for r in replies if not r.has_error()}
    lost = [m.metadata.dst_node_id for m in sent if m.metadata.dst_node_id not in ok]
    failed: dict[int, str] = {}
    unmatched = []
    for reply in replies:
        if not reply.has_error():
            continue
        code = int(reply.error.code)
        what = ERROR_NAMES.get(code, f"Flower error code {code}")
        detail = " ".join(str(reply.error.reason or "").split())
        line = f"{what} (code {code}: {detail[:300]})"
        node = reply.metadata.src_node_id
        if node not in sites:
            node = targets.get(reply.metadata.reply_to_message_id, node)
        if node in sites and node not in failed:
            failed[node] = line
        else:
            unmatched.append(line)
    problems = []
    for node in lost:
        if node not in failed and unmatched:
            failed[node] = unmatched.pop(0)
        if node in failed:
            problems.append(f"{name(node)} failed: {failed[node]}")
        else:
            problems.append(f"{name(node)} sent no reply before the round's timeout")
    problems += [f"an unknown node failed: {line}" for line in unmatched]
    if not problems:
        return ""
    return f"round {server_round} {phase}: " + "; ".join(problems) + "; run stopped"


@dataclass
class Flow:
    messages: int = 0
    bytes: int = 0
    tensor_bytes: int = 0

    def add(self, other: "Flow") -> None:
        self.messages += other.messages
        self.bytes += other.bytes
        self.tensor_bytes += other.tensor_bytes


def record_sizes(arrays: Any) -> Flow:
    """One ArrayRecord: (1 record, serialized bytes, tensor bytes)."""
    import numpy as np

    tensor = 0
    for array in arrays.values():
        count = 1
        for dim in array.shape:
            count *= int(dim)
        tensor += count * np.dtype(array.dtype).itemsize
    return Flow(messages=1, bytes=int(arrays.count_bytes()), tensor_bytes=tensor)


def message_sizes(messages: Iterable[Any]) -> Flow:
    """All ArrayRecords of a batch of messages (replies with an error carry none)."""
    flow = Flow()
    for message in messages:
        if message.has_error():
            continue
        one = Flow(messages=1)
        for record in message.content.array_records.values():
            sizes = record_sizes(record)
            one.bytes += sizes.bytes
            one.tensor_bytes += sizes.tensor_bytes
        flow.add(one)
    return flow


def gb(n_bytes: int) -> float:
    return n_bytes / BYTES_PER_GB


@dataclass
class CommReport:
    """Per round and phase, down and up; written as comm_report.json."""

    budget_bytes: int
    path: Path | None = None
    rounds: dict[int, dict[str, dict[str, Flow]]] = field(default_factory=dict)
    status: str = "running"
    reason: str = ""

    def flow(self, server_round: int, phase: str, direction: str) -> Flow:
        phases = self.rounds.setdefault(
            server_round, {p: {"down": Flow(), "up": Flow()} for p in PHASES}
        )
        return phases[phase][direction]

    def total(self, direction: str | None = None) -> Flow:
        total = Flow()
        for phases in self.rounds.values():
            for flows in phases.values():
                for name, flow in flows.items():
                    if direction is None or name == direction:
                        total.add(flow)
        return total

    def as_dict(self) -> dict[str, Any]:
        rounds = []
        for number in sorted(self.rounds):
            phases = self.rounds[number]
            item: dict[str, Any] = {"round": number}
            round_bytes = 0
            for phase, flows in phases.items():
                item[phase] = {d: vars(f).copy() for d, f in flows.items()}
                round_bytes += sum(f.bytes for f in flows.values())
            item["bytes"] = round_bytes
            rounds.append(item)
        down, up, total = self.total("down"), self.total("up"), self.total()
        return {
            "schema_version": 1,
            "definition": "bytes: ArrayRecord.count_bytes() of every message, server->clients "
            "(down) and clients->server (up); tensor_bytes: elements x itemsize; "
            "GB = 1000 * 1024**2 bytes (FlowerTune's 200,000 MB budget = 200 GB)",
            "status": self.status,
            "reason": self.reason,
            "budget_gb": gb(self.budget_bytes),
            "budget_bytes": self.budget_bytes,
            "rounds": rounds,
            "total": {
                "down_bytes": down.bytes,
                "up_bytes": up.bytes,
                "bytes": total.bytes,
                "tensor_bytes": total.tensor_bytes,
                "messages": total.messages,
                "gb": gb(total.bytes),
            },
        }

    def write(self) -> None:
        if self.path is None:
            return
        atomic_write_text(self.path, json.dumps(self.as_dict(), indent=2) + "\n")


class SortedGrid:
    """A grid whose nodes come in site order, so seeded sampling picks the same sites each run."""

    def __init__(self, grid: Any, sites: dict[int, int]) -> None:
        self._grid = grid
        self._sites = sites

    def get_node_ids(self) -> list[int]:
        return sorted(self._grid.get_node_ids(), key=lambda n: (self._sites.get(n, n), n))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)


def _log(level: int, message: str) -> None:
    from flwr.common.logger import log

    log(level, message)


def make_comm_strategy(inner: Any, report: CommReport, sites: dict[int, int], seed: int = 0) -> Any:
    """The wrapper as a `flwr.serverapp.strategy.Strategy` subclass (flwr imported lazily).

    Sites are listed in site order and `random` (which Flower's strategies sample with) is
    seeded per round and phase, so the same seed samples the same sites.
    """
    from flwr.serverapp.strategy import Strategy

    class CommCostStrategy(Strategy):
        """Counts ArrayRecord bytes around `inner` and stops before the budget is passed."""

        def __init__(self) -> None:
            self.inner = inner
            self.report = report
            self.sites = sites
            self.sent: dict[tuple[int, str], list[Any]] = {}

        def _sorted(self, replies: Iterable[Any]) -> list[Any]:
            # Replies arrive in any order; aggregation in site order gives the same sums.
            def key(message: Any) -> tuple[int, int]:
                node = message.metadata.src_node_id
                return (self.sites.get(node, node), node)

            return sorted(replies, key=key)

        def _send(self, server_round: int, phase: str, messages: list[Any], arrays: Any) -> None:
            down = message_sizes(messages)
            # Training replies bring the adapter back from every site: count them in advance.
            expected_up = record_sizes(arrays).bytes * len(messages) if phase == "train" else 0
            spent = self.report.total().bytes
            if spent + down.bytes + expected_up > self.report.budget_bytes:
                reason = (
                    f"communication budget exceeded: round {server_round} {phase} would send "
                    f"{down.bytes} B to {len(messages)} sites and receive {expected_up} B, "
                    f"bringing the total from {spent} B to {spent + down.bytes + expected_up} B "
                    f"({gb(spent + down.bytes + expected_up):.6f} GB) over the budget of "
                    f"{self.report.budget_bytes} B ({gb(self.report.budget_bytes):.6f} GB); "
                    "stopped before sending"
                )
                self.report.status, self.report.reason = "stopped", reason
                self.report.write()
                _log(ERROR, reason)
                raise CommBudgetExceeded(reason)
            self.report.flow(server_round, phase, "down").add(down)
            self.report.write()
            self.sent[(server_round, phase)] = messages  # Flower sets their ids on sending
            _log(
                INFO,
                f"comm: round {server_round} {phase} down {down.messages} messages "
                f"{down.bytes} B; total {self.report.total().bytes} B "
                f"of {self.report.budget_bytes} B",
            )

        def _receive(self, server_round: int, phase: str, replies: list[Any]) -> None:
            up = message_sizes(replies)
            self.report.flow(server_round, phase, "up").add(up)
            self.report.write()
            _log(
                INFO,
                f"comm: round {server_round} {phase} up {up.messages} messages {up.bytes} B; "
                f"total {self.report.total().bytes} B",
            )
            # Flower's strategies aggregate the replies they got and drop the errors; a round
            # with a lost site is not the round the static section describes, so stop.
            sent = self.sent.get((server_round, phase), [])
            reason = site_failures(server_round, phase, sent, replies, self.sites)
            if reason:
                self.report.status, self.report.reason = "stopped", reason
                self.report.write()
                _log(ERROR, reason)
                raise SiteFailed(reason)

        def configure_train(
            self, server_round: int, arrays: Any, config: Any, grid: Any
        ) -> list[Any]:
            grid = SortedGrid(grid, self.sites)
            random.seed(f"{seed}/{server_round}/train")
            messages = list(self.inner.configure_train(server_round, arrays, config, grid))
            self._send(server_round, "train", messages, arrays)
            return messages

        def aggregate_train(self, server_round: int, replies: Iterable[Any]) -> Any:
            replies = self._sorted(replies)
            self._receive(server_round, "train", replies)
            return self.inner.aggregate_train(server_round, replies)

        def configure_evaluate(
            self, server_round: int, arrays: Any, config: Any, grid: Any
        ) -> list[Any]:
            grid = SortedGrid(grid, self.sites)
            random.seed(f"{seed}/{server_round}/evaluate")
            messages = list(self.inner.configure_evaluate(server_round, arrays, config, grid))
            self._send(server_round, "evaluate", messages, arrays)
            return messages

        def aggregate_evaluate(self, server_round: int, replies: Iterable[Any]) -> Any:
            replies = self._sorted(replies)
            self._receive(server_round, "evaluate", replies)
            return self.inner.aggregate_evaluate(server_round, replies)

        def summary(self) -> None:
            _log(INFO, f"\t├──> Communication budget: {self.report.budget_bytes} B")
            self.inner.summary()

    return CommCostStrategy()
