"""``python -m generator.runtime.shard_server``: generate shards for a forked parent (see ``forksafe``).

Requests are ``ShardTask`` JSON; the answers to one are ``{"row": ...}`` lines, then
``{"done": stats}`` or ``{"error": message}``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from ..core.plan import ShardTask
from ..core.rows import ShardStats
from . import child, forksafe
from .shards import generate_in_process


def answer(request: dict[str, Any]) -> Iterator[dict[str, Any]]:
    task = ShardTask.from_dict(request)
    stats = ShardStats()
    try:
        for row in generate_in_process(task, stats):
            yield {"row": row}
        yield {"done": stats.as_dict()}
    except Exception as e:  # reported to the parent, which fails the build naming the shard
        yield {"error": f"{type(e).__name__}: {e}"}


if __name__ == "__main__":
    forksafe.die_with_parent(int(os.environ["JSP_PARENT_PID"]) if "JSP_PARENT_PID" in os.environ else None)
    child.serve(answer)
