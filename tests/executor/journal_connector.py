"""A custom connector for the tests, installed into the executor under test through the entry
point group ``switchyard.connectors`` (the fixture writes a ``.dist-info`` with this file as a
module): it appends each call to a JSON-lines journal (``SWITCHYARD_TEST_JOURNAL``), the way a
team's own connector would reach a system the built-in ones cannot. Operation ``refuse`` fails
permanently, ``DELETE`` marks the journal entry the target names as undone."""

from __future__ import annotations

import json
import os

from services.executor.connectors import StepCall, StepOutcome, permanent


class JournalConnector:
    def __init__(self) -> None:
        self.path = os.environ["SWITCHYARD_TEST_JOURNAL"]

    async def call(self, step: StepCall) -> StepOutcome:
        if step.operation == "refuse":
            raise permanent(f"{step.target}: refused by the journal")
        entry = {"target": step.target, "address": step.address, "operation": step.operation,
                 "payload": step.payload, "idempotency_key": step.idempotency_key,
                 "step_id": step.step_id}
        with open(self.path, "a", encoding="utf-8") as journal:
            journal.write(json.dumps(entry, sort_keys=True) + "\n")
        with open(self.path, encoding="utf-8") as journal:
            line = sum(1 for _ in journal)
        return StepOutcome(summary=f"journal line {line}", duplicate=False,
                           output={"line": line})

    async def close(self) -> None:
        return None
