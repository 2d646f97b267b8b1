"""``python -m generator._shard_server``: generate shards for a forked parent (see ``_forksafe``)."""

from __future__ import annotations

import json
import sys


def main() -> None:
    """Serve shard tasks from stdin until it closes."""
    import os

    from ._forksafe import die_with_parent
    from .pipeline import ShardStats, ShardTask, _generate_in_process

    die_with_parent(int(os.environ["JSP_PARENT_PID"]) if "JSP_PARENT_PID" in os.environ else None)

    out = sys.stdout
    sys.stdout = sys.stderr  # nothing but protocol lines may reach the pipe
    for line in sys.stdin:
        task = ShardTask.from_json(line)
        stats = ShardStats()
        try:
            for row in _generate_in_process(task, stats):
                out.write(json.dumps({"row": row}) + "\n")
            out.write(json.dumps({"done": stats.as_dict()}) + "\n")
        except Exception as e:  # reported to the parent, which fails the build naming the shard
            out.write(json.dumps({"error": f"{type(e).__name__}: {e}"}) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
