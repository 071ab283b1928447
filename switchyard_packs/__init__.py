"""The automation packs shipped with Switchyard, one folder per document type.

Each folder holds a ``pack.yaml`` (and ``examples.jsonl``, golden tests, and for some packs the
Python extension points they register through entry points). Each is registered in the entry
point group ``switchyard.packs`` of Switchyard's own ``pyproject.toml``, the way any installable
pack registers itself; ``switchyard.packs.builtin_packs`` reads them through
``importlib.resources``, so an editable install and a wheel both work.
"""
