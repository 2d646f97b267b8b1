"""A model source at a size a CPU can run: the same code with smaller config defaults.

Real-sized model rows lower without allocating, but running one (a real train step is about
1.6 TFLOP) is out of reach of a CPU validator. ``reduce_source`` rewrites only the literal
defaults of the source's ``*Config`` dataclass, by field name, so the reduced source is the
same program (same code, same structure, same ops) at small dimensions. Pure text and
``ast``: no JAX.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping

# field name -> its reduced value, from the field's value and all of the config's values.
# Every int field of a model config must be named here (``reduce_source`` refuses others),
# so no size escapes reduction. Reduced sizes keep the divisibilities the code relies on
# (heads by KV heads, image by patch, channels by groups).
Reduction = Callable[[int, Mapping[str, object]], int]


def _fixed(n: int) -> Reduction:
    return lambda value, config: min(value, n)


def _kv_heads(value: int, config: Mapping[str, object]) -> int:
    heads = config.get("num_heads")
    if value == heads:  # multi-head attention stays multi-head
        return REDUCTIONS["num_heads"](int(heads), config)
    return 1 if value == 1 else 2


REDUCTIONS: dict[str, Reduction] = {
    # data
    "batch_size": _fixed(2),
    "global_batch_size": _fixed(8),  # sharded programs: every mesh's batch axis (2, 4 or 8) divides it
    "seq_len": _fixed(16),
    "max_seq_len": _fixed(32),
    "prompt_len": _fixed(8),
    "vocab_size": _fixed(512),
    "num_classes": _fixed(10),
    # one microbatch: a reduced batch of 2 stays whole (IREE 3.13 rejects the scatter of a batch of one)
    "num_microbatches": _fixed(1),
    "num_timesteps": _fixed(100),  # diffusion steps of a noise schedule
    # transformers
    "d_model": _fixed(64),
    "num_heads": _fixed(4),
    "num_kv_heads": _kv_heads,
    "head_dim": _fixed(16),
    "d_ff": _fixed(128),
    "num_layers": _fixed(2),
    "num_layer_groups": _fixed(1),
    "window_size": _fixed(8),
    "top_k": _fixed(8),
    # mixture of experts
    "num_experts": _fixed(4),
    "experts_per_token": _fixed(2),
    "expert_d_ff": _fixed(64),
    # vision
    "image_size": _fixed(16),
    "patch_size": _fixed(4),
    "in_channels": _fixed(3),
    "channels": _fixed(16),
    "num_groups": _fixed(4),
    "num_blocks": _fixed(2),
    "depth_1": _fixed(2),  # blocks per stage (a stage whose first block downsamples keeps one more)
    "depth_2": _fixed(2),
    "depth_3": _fixed(2),
    "depth_4": _fixed(2),
    "time_embed_dim": _fixed(32),
    # recurrent and state-space
    "input_size": _fixed(16),
    "hidden_size": _fixed(32),
    "state_size": _fixed(8),
    "conv_width": _fixed(4),
    "dt_rank": _fixed(4),
}


def _config_class(tree: ast.Module) -> ast.ClassDef:
    found = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name.endswith("Config")]
    if len(found) != 1:
        raise ValueError(f"a model source has exactly one module-level *Config class, found {len(found)}")
    return found[0]


def config_defaults(source: str) -> dict[str, object]:
    """The literal defaults of the source's ``*Config`` dataclass, by field name."""
    cls = _config_class(ast.parse(source))
    defaults: dict[str, object] = {}
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            try:
                defaults[node.target.id] = ast.literal_eval(node.value)
            except ValueError:
                raise ValueError(f"config field {node.target.id!r} has no literal default") from None
    return defaults


def reduced_config(config: Mapping[str, object]) -> dict[str, object]:
    """``config`` with every int size reduced (``ValueError`` naming an unknown int field)."""
    unknown = [k for k, v in config.items() if type(v) is int and k not in REDUCTIONS]
    if unknown:
        raise ValueError(f"config int fields without a reduction: {', '.join(unknown)}; known: {', '.join(REDUCTIONS)}")
    return {k: REDUCTIONS[k](v, config) if type(v) is int else v for k, v in config.items()}


def reduce_source(source: str) -> str:
    """``source`` with its config's int defaults reduced; every other character unchanged."""
    tree = ast.parse(source)
    cls = _config_class(tree)
    config = config_defaults(source)
    reduced = reduced_config(config)
    lines = source.splitlines(keepends=True)
    # Rewrite from the last field up, so earlier offsets stay valid (one field per line).
    for node in reversed(cls.body):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            name = node.target.id
            if reduced[name] == config[name]:
                continue
            v = node.value
            if v.lineno != v.end_lineno:
                raise ValueError(f"config field {name!r} spans several lines")
            line = lines[v.lineno - 1]
            start, end = _char_offset(line, v.col_offset), _char_offset(line, v.end_col_offset)
            lines[v.lineno - 1] = line[:start] + repr(reduced[name]) + line[end:]
    return "".join(lines)


def _char_offset(line: str, byte_offset: int) -> int:
    """``ast`` column offsets count UTF-8 bytes."""
    return len(line.encode()[:byte_offset].decode())
