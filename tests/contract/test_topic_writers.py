"""Each topic has one owning writer, and every other service that writes it is written down.

docs/architecture.md's Topics table names who writes each topic; the first service named is
its owner (a topic whose first writer is outside Switchyard, such as ``intake``, has no owning
service). "Topics written by more than their owner" lists every other service that still
produces to one, with what for. This test reads what the services send (``send``,
``send_nowait``, ``send_raw`` of a topic from ``switchyard.messaging``, and status events
through ``switchyard.tasks.publish_status``): a writer the Topics table does not name fails, a
named one that no longer writes fails, and so does a second writer that is not listed (or a
listed one that is gone).
"""

from __future__ import annotations

import re
from pathlib import Path

from switchyard import messaging
from tests.architecture_doc import table_rows

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("ingest", "decision", "executor", "review")
SENDS = re.compile(r"\.send(?:_nowait|_raw)?\(\s*([A-Z_]+)\b")
PUBLISHES_STATUS = re.compile(r"\bpublish_status\(")
CONSTANTS = {name: topic.name for name, topic in vars(messaging).items()
             if isinstance(topic, messaging.Topic)}
# Written by the shared stream plumbing or created empty, not by a service's code.
PLUMBING = {"dead-letter", "broker-marker"}


def _rows() -> dict[str, str]:
    """Topic -> its 'written by' cell."""
    return {cells[0].split("`")[1]: cells[2] for cells in table_rows("## Topics", 4)
            if cells[0].startswith("`")}


def documented_writers() -> dict[str, list[str]]:
    """Topic -> the services its 'written by' cell names, in the order named."""
    return {topic: list(dict.fromkeys(re.findall(rf"\b({'|'.join(SERVICES)})\b", cell)))
            for topic, cell in _rows().items()}


def outside_first(topic: str) -> bool:
    """The topic's first writer is outside Switchyard (upstream producers, edge devices)."""
    return not _rows()[topic].startswith(SERVICES)


def declared_second_writers() -> set[tuple[str, str]]:
    return {(cells[0], cells[1].strip("`"))
            for cells in table_rows("### Topics written by more than their owner", 4)
            if cells[1].startswith("`")}


def writers_in_code() -> dict[str, dict[str, set[str]]]:
    """Topic -> service -> the files that produce to it."""
    found: dict[str, dict[str, set[str]]] = {}
    for service in SERVICES:
        for path in (ROOT / "services" / service).rglob("*.py"):
            if "downstream" in path.parts:  # the demo downstream systems are outside systems
                continue
            source = path.read_text()
            topics = {CONSTANTS[c] for c in SENDS.findall(source) if c in CONSTANTS}
            if PUBLISHES_STATUS.search(source):
                topics.add(messaging.TASK_STATUS.name)
            for topic in topics:
                found.setdefault(topic, {}).setdefault(service, set()).add(
                    str(path.relative_to(ROOT)))
    return found


def test_every_topic_is_in_the_table() -> None:
    assert set(documented_writers()) == set(CONSTANTS.values())


def test_the_table_names_exactly_the_services_that_write_each_topic() -> None:
    documented = documented_writers()
    in_code = writers_in_code()
    for topic in sorted(set(CONSTANTS.values()) - PLUMBING):
        assert set(documented[topic]) == set(in_code.get(topic, {})), (
            f"{topic}: docs/architecture.md names {documented[topic]}, the code sends from "
            f"{ {s: sorted(f) for s, f in in_code.get(topic, {}).items()} }")


def test_every_writer_besides_the_owner_is_listed_and_every_listed_one_exists() -> None:
    documented = documented_writers()
    second = {(service, topic) for topic, services in documented.items()
              for service in (services if outside_first(topic) else services[1:])}
    declared = declared_second_writers()
    assert second == declared, (
        "not listed under 'Topics written by more than their owner': "
        f"{sorted(second - declared)}; listed but not a writer: {sorted(declared - second)}")


def test_the_scan_sees_sends_as_the_services_write_them() -> None:
    sample = ("await self.producer.send(DECISIONS, task_id, d)\n"
              "futures.append(await self.ctx.producer.send_nowait(\n    TASK_STATUS, t, e))\n"
              "await producer.send_raw(INTAKE.full_name(settings), key, value)")
    assert SENDS.findall(sample) == ["DECISIONS", "TASK_STATUS", "INTAKE"]
    assert not SENDS.findall('await producer.send_raw(row["source_topic"], key, value)')
