"""Helpers for the pack tests: a small valid pack to mutate, and its files as bytes."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

#: A pack using every feature the loader knows (no entry points, so it loads anywhere).
EXPENSE: dict[str, Any] = {
    "pack": "expense_claim",
    "version": "1.0.0",
    "description": "Employee expense claims",
    "content_types": ["text/plain", "application/json"],
    "fields": {
        "employee": {"type": "string", "required": True, "data_class": "personal",
                     "labels": ["Employee", "Name"]},
        "amount": {"type": "money", "required": True, "data_class": "derived",
                   "labels": ["Total", "Amount"]},
        "currency": {"type": "enum", "values": ["USD", "EUR", "GBP"], "data_class": "derived",
                     "labels": ["Currency"]},
        "claim_date": {"type": "date", "data_class": "derived", "labels": ["Date"]},
        "nights": {"type": "integer", "data_class": "derived", "labels": ["Nights"]},
        "iban": {"type": "iban", "labels": ["IBAN"]},
    },
    "parameters": {
        "max_auto_amount": {"type": "number", "default": 500, "minimum": 0},
        "approver_group": {"type": "string", "default": "managers"},
        "blocked_employees": {"type": "list", "items": "string", "default": []},
    },
    "models": {"router": {"min_confidence": 0.8}},
    "decision": {
        "hit_policy": "first",
        "rules": [
            {"name": "employee_blocked", "when": "fields.employee in params.blocked_employees",
             "outcome": "reject", "explain": "Claims of this employee are not paid."},
            {"name": "amount_over_limit", "when": "fields.amount > params.max_auto_amount",
             "outcome": "escalate", "reason": "POLICY",
             "explain": "Claim of ${fields.amount} above ${params.max_auto_amount}",
             "review": {"queue": "finance", "group": "managers", "priority": "high",
                        "sla": "4h", "four_eyes": True}},
            {"name": "straight_through", "when": "true", "outcome": "auto_execute"},
        ],
    },
    "review": {"queue": "default", "group": "", "sla": "8h", "priority": "normal"},
    "plan": [
        {"name": "create_claim", "target": "http://erp/claims", "operation": "POST",
         "payload": {"employee": "${fields.employee}", "amount": "${fields.amount}",
                     "note": "claim ${task.task_id}"},
         "timeout": "5s", "retry": {"max_attempts": 4, "backoff": "200ms", "max_backoff": "5s"},
         "when": "fields.amount > 0",
         "compensate": {"target": "http://erp/claims/{idempotency_key}", "operation": "DELETE",
                        "payload": {"reason": "undo ${task.task_id}"}}},
        {"approval": {"name": "manager_ok", "group": "${params.approver_group}",
                      "four_eyes": False, "sla": "24h", "queue": "finance",
                      "instructions": "Approve the claim"}},
        {"parallel": [
            {"name": "notify_employee", "target": "http://mail/send",
             "payload": {"to": "${fields.employee}", "claim": "${steps.create_claim.output}"}},
            {"name": "book_expense", "target": "http://ledger/entries",
             "compensate": {"target": "http://ledger/entries/{idempotency_key}"}},
        ]},
        {"wait": {"name": "cooling_off", "duration": "2h"}},
        {"wait": {"name": "bank_confirmation", "callback": "bank", "timeout": "24h"}},
    ],
    "retention": {"days": 365},
    "tests": [
        {"name": "small claim goes straight through",
         "document": {"text": "Employee: Ann Lee\nTotal: 42.50 EUR", "content_type": "text/plain",
                      "metadata": {"source": "test"}},
         "parameters": {"max_auto_amount": 100},
         "expect": {"outcome": "auto_execute", "rule": "straight_through",
                    "fields": {"amount": "42.50"}}},
    ],
}


def expense() -> dict[str, Any]:
    """A fresh deep copy of the expense pack document, to mutate."""
    return copy.deepcopy(EXPENSE)


def files_of(doc: Any, **extra: bytes) -> dict[str, bytes]:
    """A pack's files: ``doc`` as pack.yaml (a str/bytes is used as is) plus ``extra``."""
    if isinstance(doc, bytes):
        data = doc
    elif isinstance(doc, str):
        data = doc.encode()
    else:
        data = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).encode()
    return {"pack.yaml": data, **extra}


@pytest.fixture
def expense_doc() -> dict[str, Any]:
    return expense()
