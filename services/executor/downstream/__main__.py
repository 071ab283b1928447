"""``python -m services.executor.downstream``: the demo downstream, configured from
SWITCHYARD_* settings (``switchyard up`` starts it)."""

from __future__ import annotations

import asyncio

from services.executor.downstream.server import serve
from switchyard import Settings

if __name__ == "__main__":
    asyncio.run(serve(Settings.from_env()))
