"""The router's classes and labelled examples, taken from the enabled automation packs.

A pack is a document type; its name is the router's label for it and its ``examples.jsonl``
holds labelled examples (``{"text": ...}`` per line). The router is trained on:

* one class per enabled pack: the packs shipped in ``switchyard_packs/``, the packs applied
  to the decision service (table ``packs`` in PostgreSQL, when it is reachable: the newest
  version each tenant has of each name, their examples joined) and any pack folder named with
  ``--packs DIR``, in a stable order (the shipped classes first, in their historic
  order, then the others by name), and the class ``other`` last -- documents no pack
  automates, which the decision service escalates;
* each pack's examples, labelled with the pack's name (a pack with none, and no corpus rows,
  gets no class: the router could never answer it, and while the router does not know a type
  the decision service routes its tasks by their submitted kind);
* each pack's look-alikes (``look_alikes.jsonl``: documents that resemble its type but are
  something else, such as a statement of account beside invoices), labelled ``other``; a
  text that is also another pack's example stays that pack's;
* the shipped seeded corpus (``models/data/router_corpus.jsonl``): its ``other`` rows, and its
  rows of the shipped kinds when that kind's pack is enabled (a pack example with the text of
  a corpus row, or of an earlier example, is not added again). Rows of a kind whose pack is
  not enabled are left out.

Corpus rows keep their ids (so their train/validation/test split does not move); a pack
example's id is ``<pack>:<sha256(text)[:16]>``, so the split of an example depends on its text
alone and retraining with one more pack leaves every other row where it was.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from services.decision.training import features as F

__all__ = ["OTHER", "PackExamples", "RouterTrainingSet", "collect_packs", "example_id",
           "router_classes", "router_training_set", "stored_packs"]

#: The class of documents that no enabled pack automates.
OTHER = "other"


class _PackLike(Protocol):
    name: str
    version: str
    digest: str
    examples: tuple[str, ...]
    look_alikes: tuple[str, ...]


@dataclass(frozen=True)
class PackExamples:
    """What router training needs of one pack: its label, identity and example texts."""

    name: str
    version: str
    digest: str
    examples: tuple[str, ...]
    #: Where it came from: "builtin" (shipped) or the folder it was loaded from.
    source: str
    #: Documents that resemble this type but are something else: rows of class ``other``.
    look_alikes: tuple[str, ...] = ()

    @classmethod
    def of(cls, pack: _PackLike, source: str) -> PackExamples:
        return cls(pack.name, pack.version, pack.digest, tuple(pack.examples), source,
                   tuple(pack.look_alikes))


@dataclass(frozen=True)
class RouterTrainingSet:
    """The router's classes (PROBS order) and its labelled rows (``id``, ``text``, ``label``)."""

    classes: tuple[str, ...]
    rows: tuple[Mapping[str, Any], ...]
    packs: tuple[PackExamples, ...]
    #: Packs left out for want of examples (no class the router could never predict: their
    #: documents stay routed by the submitted kind).
    without_examples: tuple[str, ...] = ()

    def class_examples(self) -> dict[str, int]:
        """Rows per class, in class order (the model card lists them)."""
        counts = {c: 0 for c in self.classes}
        for row in self.rows:
            counts[str(row["label"])] += 1
        return counts

    def sha256(self) -> str:
        """Digest of every row (id, label, text) in order: a change means retraining."""
        h = hashlib.sha256()
        for row in self.rows:
            h.update(json.dumps([row["id"], row["label"], row["text"]],
                                ensure_ascii=False).encode("utf-8"))
            h.update(b"\n")
        return h.hexdigest()


def example_id(label: str, text: str) -> str:
    """The id (and so the split) of a pack example: its label and a digest of its text."""
    return f"{label}:{hashlib.sha256(text.encode('utf-8')).hexdigest()[:16]}"


def router_classes(pack_names: Iterable[str]) -> tuple[str, ...]:
    """Shipped kinds in their historic order, then the other packs by name, then ``other``."""
    names = set(pack_names)
    if OTHER in names:
        raise ValueError(f"a pack cannot be named {OTHER!r}: it is the router's class for "
                         "documents no pack automates")
    shipped = [c for c in F.ROUTER_CLASSES if c in names and c != OTHER]
    return tuple(shipped + sorted(names - set(shipped)) + [OTHER])


def router_training_set(packs: Sequence[PackExamples],
                        corpus: Sequence[Mapping[str, Any]]) -> RouterTrainingSet:
    """Classes and rows from the packs and the shipped corpus (see the module docstring)."""
    by_name: dict[str, PackExamples] = {}
    for pack in packs:   # a later pack of the same name (e.g. from --packs) replaces one
        by_name[pack.name] = pack
    classes = router_classes(by_name)
    wanted = set(classes)
    rows: list[Mapping[str, Any]] = []
    seen: set[str] = set()
    for row in corpus:   # every row of an enabled class, as the corpus has it
        if row["label"] in wanted:
            seen.add(str(row["text"]))
            rows.append({"id": str(row["id"]), "text": str(row["text"]),
                         "label": str(row["label"])})
    for name in classes:
        pack = by_name.get(name)
        for text in pack.examples if pack else ():
            if text not in seen:   # the same text under two labels: the first one counts
                seen.add(text)
                rows.append({"id": example_id(name, text), "text": text, "label": name})
    for name in classes:
        pack = by_name.get(name)
        for text in pack.look_alikes if pack else ():
            if text not in seen:
                seen.add(text)
                rows.append({"id": example_id(OTHER, text), "text": text, "label": OTHER})
    labelled = {str(row["label"]) for row in rows}
    empty = tuple(c for c in classes if c != OTHER and c not in labelled)
    classes = tuple(c for c in classes if c not in empty)
    return RouterTrainingSet(classes, tuple(rows),
                             tuple(by_name[c] for c in classes if c in by_name), empty)


def collect_packs(directories: Sequence[Path] = (), *, builtin: bool = True,
                  stored: Sequence[PackExamples] = ()) -> list[PackExamples]:
    """The shipped packs (unless ``builtin`` is false), then ``stored`` ones (see
    :func:`stored_packs`), then the packs in ``directories``: a later one of the same name
    replaces an earlier one.

    Raises ``SystemExit`` with one line per problem when a folder is not a valid pack: a
    router must not be trained on a pack the decision service would refuse.
    """
    from switchyard.packs import PackError, builtin_packs, load_pack

    found: list[PackExamples] = []
    if builtin:
        found += [PackExamples.of(p, "builtin") for _, p in sorted(builtin_packs().items())]
    found += stored
    problems: list[str] = []
    for directory in directories:
        try:
            found.append(PackExamples.of(load_pack(Path(directory)), str(directory)))
        except PackError as exc:
            problems += [f"{directory}: {line}" for line in exc.problems]
    if problems:
        raise SystemExit("\n".join(problems))
    return found


def _semver(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in version.split("."))
    except ValueError:
        return (-1,)


def stored_packs(settings: Any, log: Any = print) -> list[PackExamples]:
    """The packs applied through PackService (table ``packs``), one per name: the newest
    version of each tenant's pack of that name, their examples joined. An unreachable
    database (or one without the table) is reported and gives none: training works offline
    on the shipped packs and ``--packs``."""
    import asyncio
    import base64

    import asyncpg

    from switchyard.storage import connect
    from switchyard.packs import PackError, load_pack_files

    async def fetch() -> list[Mapping[str, Any]]:
        conn = await asyncio.wait_for(connect(settings), 5)
        try:
            return await conn.fetch("SELECT tenant_id, name, version, files FROM packs "
                                    "ORDER BY name, tenant_id")
        finally:
            await conn.close()

    try:
        rows = asyncio.run(fetch())
    except (OSError, RuntimeError, asyncio.TimeoutError, asyncpg.PostgresError,
            asyncpg.InterfaceError) as exc:   # RuntimeError: no PostgreSQL configured
        log(f"[train] stored packs not read (PostgreSQL: {str(exc) or type(exc).__name__}): "
            "training on the shipped packs and --packs only")
        return []
    newest: dict[tuple[str, str], Mapping[str, Any]] = {}
    for row in rows:
        key = (row["name"], row["tenant_id"])
        if key not in newest or _semver(row["version"]) > _semver(newest[key]["version"]):
            newest[key] = row
    merged: dict[str, list[Any]] = {}
    for (name, tenant), row in sorted(newest.items()):
        files = row["files"] if isinstance(row["files"], dict) else json.loads(row["files"])
        try:
            pack = load_pack_files({path: base64.b64decode(blob)
                                    for path, blob in files.items()})
        except (PackError, ValueError) as exc:
            log(f"[train] stored pack {name} {row['version']} of tenant {tenant or '(shared)'} "
                f"left out: {exc}")
            continue
        merged.setdefault(name, []).append((tenant, pack))
    out = []
    for name, found in merged.items():
        texts = list(dict.fromkeys(t for _, pack in found for t in pack.examples))
        look_alikes = list(dict.fromkeys(t for _, pack in found for t in pack.look_alikes))
        out.append(PackExamples(
            name, ", ".join(f"{tenant or 'shared'}:{pack.version}" for tenant, pack in found),
            hashlib.sha256("".join(p.digest for _, p in found).encode()).hexdigest(),
            tuple(texts), "postgresql", tuple(look_alikes)))
    return out
