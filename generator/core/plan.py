"""The shard plan: a build split into shards, each a pure function of its ``ShardTask``.

Every shard is a pure function of its ``ShardTask`` (config, seed, split, shard index and
sizes), so shards can run in any process, in any order, and give the same rows. A program's
split follows from its structure (``structure.split_of``); the shards of a split partition
that split's program space (``sampler.Partition``). A build has at most ``MAX_SHARDS``
shards, and larger builds get larger shards.

Shards are sized for parallel builds: every split has a multiple of ``MIN_SHARDS_PER_SPLIT``
shards (as far as its rows and ``MAX_SHARDS`` allow), and shard ``k`` of ``S`` holds the split's rows ``k, k + S, k + 2S...``,
so every shard draws the same mix of categories (a model row costs a hundred op-table rows).
``datasets`` hands each of its ``num_proc`` workers a contiguous run of a split's shards, and
each run then costs about the same: no worker waits on another's expensive rows, small splits
included.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from .categories import CATEGORIES
from .policy import DEFAULT_POLICY, Policy
from .structure import SPLITS

MIXTURES = ("balanced", "mixed")
# Platforms JAX lowers for without their hardware (``lowering.extract_ir``); the host's by default.
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")
HOST_PLATFORM = "cpu"
MAX_SHARDS = 128
# Shards per split come in multiples of this, so 1, 2, 4 or 8 workers each get an equal run of them.
MIN_SHARDS_PER_SPLIT = 8


@dataclass(frozen=True)
class ShardTask:
    """Everything one shard's rows depend on.

    Attributes:
      split: ``"train"``, ``"validation"`` or ``"test"``.
      shard_index: index of the shard within its split.
      bucket: this shard's part of its split's program space, in ``range(num_buckets)``.
      num_buckets: number of shards of its split.
      row_offset: index in the split of this shard's first row.
      num_rows: rows this shard yields.
      row_stride: split indices between this shard's rows (its split's shard count): row ``i``
        of the shard is row ``row_offset + i * row_stride`` of the split.
      seed: the build's seed.
      categories: categories the build draws from.
      mixture: ``"balanced"`` (round-robin over categories) or ``"mixed"`` (drawn at random).
      policy: the sampler's weights and limits.
      with_optimized_hlo: also compile each program and record XLA's optimized HLO.
      max_tokens: if set, every view row of a pair (``views.fits``) is within this many
        tokens; pairs that miss it are resampled.
      platform: the platform programs are lowered for (``PLATFORMS``).
    """

    split: str
    shard_index: int
    bucket: int
    num_buckets: int
    row_offset: int
    num_rows: int
    seed: int
    categories: tuple[str, ...]
    mixture: str = "balanced"
    policy: Policy = DEFAULT_POLICY
    with_optimized_hlo: bool = False
    max_tokens: int | None = None
    platform: str = HOST_PLATFORM
    row_stride: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> ShardTask:
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ShardTask:
        d = dict(d)
        p = d.pop("policy")
        policy = Policy(
            **{
                k: tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v
                for k, v in p.items()
            }
        )
        return cls(**{**d, "categories": tuple(d["categories"])}, policy=policy)

    def category_of(self, index_in_split: int) -> str:
        if self.mixture == "balanced":
            return self.categories[index_in_split % len(self.categories)]
        return random.Random(f"{self.seed}:{self.split}:mix:{index_in_split}").choice(self.categories)


def check_size(name: str, value: Any) -> int:
    """``value`` as a non-negative int, or a ``ValueError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return value


def check_platforms(platforms: str | Iterable[str] | None) -> tuple[str, ...]:
    """The platforms to stage, in order and without repeats (``"cpu,tpu"`` or ``["cpu", "tpu"]``;
    ``None``: the CPU's); a ``ValueError`` naming the unknown ones and the valid ones."""
    if platforms is None:
        return (HOST_PLATFORM,)
    items = platforms.split(",") if isinstance(platforms, str) else list(platforms)
    items = [p.strip() if isinstance(p, str) else p for p in items]
    bad = [p for p in items if p not in PLATFORMS]
    if bad or not items:
        raise ValueError(f"unknown platforms {bad or items!r}; valid platforms: {', '.join(PLATFORMS)}")
    return tuple(dict.fromkeys(items))


def check_categories(categories) -> tuple[str, ...]:
    categories = tuple(categories)
    bad = [c for c in categories if c not in CATEGORIES]
    if bad or not categories:
        raise ValueError(f"unknown categories {bad or categories!r}; valid categories: {', '.join(CATEGORIES)}")
    return categories


def plan_shards(
    *,
    train_size: int,
    validation_size: int,
    test_size: int = 0,
    seed: int,
    categories: tuple[str, ...] = CATEGORIES,
    mixture: str = "balanced",
    rows_per_shard: int = 500,
    policy: Policy = DEFAULT_POLICY,
    with_optimized_hlo: bool = False,
    max_tokens: int | None = None,
    platform: str = HOST_PLATFORM,
    min_shards_per_split: int = MIN_SHARDS_PER_SPLIT,
) -> dict[str, list[ShardTask]]:
    """Split a build into shards; the plan depends on sizes and seed only, never on ``num_proc``.

    ``min_shards_per_split``: each split's shard count is rounded up to a multiple of it (as far
    as its rows and ``MAX_SHARDS`` allow); 1 keeps ``rows_per_shard`` rows a shard (a split that
    ``rows_per_shard`` covers is one shard, as a caller that streams one shard needs).
    """
    sizes = {
        "train": check_size("train_size", train_size),
        "validation": check_size("validation_size", validation_size),
        "test": check_size("test_size", test_size),
    }
    check_size("seed", seed)
    if not any(sizes.values()):
        raise ValueError("train_size, validation_size and test_size are all 0; at least one split needs rows")
    if isinstance(rows_per_shard, bool) or not isinstance(rows_per_shard, int) or rows_per_shard < 1:
        raise ValueError(f"rows_per_shard must be a positive integer, got {rows_per_shard!r}")
    if mixture not in MIXTURES:
        raise ValueError(f"unknown mixture {mixture!r}; valid mixtures: {', '.join(MIXTURES)}")
    categories = check_categories(categories)
    if not isinstance(with_optimized_hlo, bool):
        raise ValueError(f"with_optimized_hlo must be True or False, got {with_optimized_hlo!r}")
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
        raise ValueError(f"max_tokens must be a positive integer or None (no budget), got {max_tokens!r}")
    if platform not in PLATFORMS:
        raise ValueError(f"unknown platform {platform!r}; valid platforms: {', '.join(PLATFORMS)}")
    if with_optimized_hlo and platform != HOST_PLATFORM:
        raise ValueError(
            f"with_optimized_hlo needs the platform's compiler: {platform!r} cannot be compiled here (only {HOST_PLATFORM!r})"
        )
    # Each split rounds its shard count up and may take up to MIN_SHARDS_PER_SPLIT shards: leave that room.
    if isinstance(min_shards_per_split, bool) or not isinstance(min_shards_per_split, int) or min_shards_per_split < 1:
        raise ValueError(f"min_shards_per_split must be a positive integer, got {min_shards_per_split!r}")
    room = MAX_SHARDS - len(SPLITS) * min_shards_per_split
    rows_per_shard = max(rows_per_shard, math.ceil(sum(sizes.values()) / room))
    counts = {split: math.ceil(n / rows_per_shard) for split, n in sizes.items()}
    spare = MAX_SHARDS - sum(counts.values())
    for split in SPLITS:  # a multiple of min_shards_per_split shards where rows and MAX_SHARDS allow
        want = min(sizes[split], -(-max(counts[split], 1) // min_shards_per_split) * min_shards_per_split)
        more = min(max(0, want - counts[split]), spare)
        counts[split] += more
        spare -= more
    plan: dict[str, list[ShardTask]] = {}
    for split in SPLITS:
        tasks = []
        for i in range(counts[split]):
            n = len(range(i, sizes[split], counts[split]))  # rows i, i + S, i + 2S ... of the split
            tasks.append(
                ShardTask(
                    split,
                    i,
                    i,
                    counts[split],
                    i,
                    n,
                    seed,
                    categories,
                    mixture,
                    policy,
                    with_optimized_hlo,
                    max_tokens,
                    platform,
                    counts[split],
                )
            )
        plan[split] = tasks
    return plan


def example_key(task: ShardTask, index_in_shard: int) -> str:
    return f"{task.split}-{task.shard_index:05d}-{index_in_shard:06d}"


# The ``lowering`` column (text only: readers of rows need no JAX to parse it).


class Lowering(NamedTuple):
    """A row's ``lowering`` column, parsed (``parse_lowering``): how its IR is reproduced.

    Attributes:
      platform: the platform the IR was lowered for (``PLATFORMS``).
      host_devices: host CPU devices the lowering needs (1, or a mesh's 8).
      static_argnums: indices of ``example_args()`` that ``jax.jit`` takes as static, in order.
    """

    platform: str = HOST_PLATFORM
    host_devices: int = 1
    static_argnums: tuple[int, ...] = ()


def static_argnums_text(static_argnums: tuple[int, ...]) -> str:
    """``static_argnums`` as ``jax.jit`` takes it: ``2`` for one index, ``(0,2)`` for several."""
    if len(static_argnums) == 1:
        return str(static_argnums[0])
    return "(" + ",".join(str(i) for i in static_argnums) + ")"


def lowering_method(host_devices: int, platform: str = HOST_PLATFORM, static_argnums: Sequence[int] = ()) -> str:
    """The ``lowering`` column: how a row's IR is reproduced from its source.

    ``jit``, then after a colon and separated by commas, in this order, whichever apply:
    ``platform=P`` (lowered for another platform than the CPU, ``lowering_platforms=(P,)``),
    ``static_argnums=I`` (arguments ``jax.jit`` takes as static, as it takes them: ``2``, or
    ``(0,2)`` for several) and ``host_devices=N`` (a mesh of N host CPU devices). For example
    ``jit``, ``jit:static_argnums=2``, ``jit:platform=tpu,static_argnums=(0,2),host_devices=8``.
    """
    static = tuple(static_argnums)
    if any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in static) or list(static) != sorted(
        set(static)
    ):
        raise ValueError(f"static_argnums must be distinct non-negative indices in increasing order, got {static!r}")
    parts = (
        ([f"platform={platform}"] if platform != HOST_PLATFORM else [])
        + ([f"static_argnums={static_argnums_text(static)}"] if static else [])
        + ([f"host_devices={host_devices}"] if host_devices > 1 else [])
    )
    return "jit" + (":" + ",".join(parts) if parts else "")


_PART = re.compile(r"(platform|static_argnums|host_devices)=(\([0-9,]*\)|[^,()]*)(?:,|$)")


def parse_lowering(lowering: str) -> Lowering:
    """The inverse of ``lowering_method``: a ``Lowering`` (platform, host devices, static
    argument indices); a ``ValueError`` naming the valid forms for any other text."""
    valid = (
        "valid: 'jit', or 'jit:' followed by, in this order and separated by commas, any of "
        f"'platform=P' (P one of {', '.join(p for p in PLATFORMS if p != HOST_PLATFORM)}), "
        "'static_argnums=I' or 'static_argnums=(I,J,...)' (increasing indices) and 'host_devices=N' (N > 1)"
    )
    bad = ValueError(f"unknown lowering {lowering!r}; {valid}")
    if not isinstance(lowering, str) or not (lowering == "jit" or lowering.startswith("jit:")):
        raise bad
    found: dict[str, str] = {}
    rest = lowering[4:] if lowering != "jit" else ""
    while rest:
        m = _PART.match(rest)
        if m is None or m.group(1) in found:
            raise bad
        found[m.group(1)] = m.group(2)
        rest = rest[m.end() :]
    platform = found.get("platform", HOST_PLATFORM)
    devices_text = found.get("host_devices", "1")
    static_text = found.get("static_argnums", "()").strip("()")
    indices = static_text.split(",") if static_text else []
    if platform not in PLATFORMS or not devices_text.isdigit() or not all(i.isdigit() for i in indices):
        raise bad
    parsed = Lowering(platform, int(devices_text), tuple(int(i) for i in indices))
    try:
        canonical = lowering_method(parsed.host_devices, parsed.platform, parsed.static_argnums)
    except ValueError:
        raise bad from None
    if lowering != canonical:
        raise bad
    return parsed
