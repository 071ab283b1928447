"""Pack folders for the training tests: a minimal valid pack.yaml and its examples.jsonl."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from pathlib import Path

#: The kinds of the shipped corpus (models/data), without ``other``.
CORPUS_KINDS = ("invoice", "admission_form", "support_ticket", "classroom_event")


def write_pack(directory: Path, name: str, examples: Iterable[str] = ()) -> Path:
    """``directory/name/`` with a pack.yaml that escalates everything and, when given, an
    examples.jsonl of ``examples``."""
    folder = directory / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pack.yaml").write_text(
        f"pack: {name}\nversion: 1.0.0\ndescription: {name} documents (a training test)\n"
        "decision:\n  rules:\n    - {name: to_a_person, when: \"true\", outcome: escalate}\n"
        "plan: []\n", "utf-8")
    lines = [json.dumps({"text": text}) for text in examples]
    if lines:
        (folder / "examples.jsonl").write_text("\n".join(lines) + "\n", "utf-8")
    return folder


def expense_claims(n: int, seed: int) -> list[str]:
    """Seeded expense-claim documents: a document type the shipped corpus does not have."""
    rng = random.Random(seed)
    names = ["Ann Lee", "Bo Chen", "Carla Rossi", "Deepak Patel", "Elif Yilmaz", "Hiro Tanaka",
             "Ines Costa", "Jonas Weber", "Kemi Adeyemi", "Priya Nair"]
    purposes = ["taxi to the client", "train ticket", "hotel, two nights", "team lunch",
                "conference fee", "mileage 120 km", "airport parking", "per diem"]
    out = []
    for i in range(n):
        name, purpose = rng.choice(names), rng.choice(purposes)
        amount = f"{rng.randint(5, 900)}.{rng.randint(0, 99):02d}"
        currency = rng.choice(["EUR", "USD", "GBP"])
        if i % 3 == 0:
            out.append(f"Expense claim\nEmployee: {name}\nPurpose: {purpose}\nAmount: {amount}\n"
                       f"Currency: {currency}\nReceipts attached: {rng.randint(1, 4)}")
        elif i % 3 == 1:
            out.append(f"Please reimburse my out-of-pocket expense ({purpose}), {amount} "
                       f"{currency}, receipt attached. Thanks, {name}")
        else:
            out.append(f"EXPENSE REIMBURSEMENT REQUEST\nName: {name}\nReason: {purpose}\n"
                       f"Total: {amount} {currency}\nI confirm this was company business.")
    return out
