"""The automation packs shipped with Switchyard, one folder per document type.

Each folder holds a ``pack.yaml`` (and ``examples.jsonl``, golden tests, and for some packs the
Python extension points they register through entry points). ``switchyard.packs.builtin_packs``
finds them through ``importlib.resources``, so an editable install and a wheel both work.
"""
