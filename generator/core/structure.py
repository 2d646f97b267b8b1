"""The split rule: a program's split follows from its structure, so no structure is in two splits.

A program's *structure* is what it computes with sizes, names, constants and style taken out:

- an op-table program: its op entries in order and how values flow between them (which input,
  earlier result or literal each operand is, and which results are returned);
- a model program: its spec without sizes, constants, names, style and idioms (the spec's own
  ``structure()``, ``models.compose``), since the same model in another style or at other sizes
  lowers to nearly the same IR.

Its ``structure`` key is a hash of that text, recorded in every row. The key alone decides the
split (``split_of``): about ``HELD_OUT_SHARE`` of structures are validation, as many test, the
rest train. The rule depends on neither the build's seed nor its sizes, so a structure held out
of one build is held out of every build of this dataset version: a model trained on any build's
train split never saw a test structure.
"""

from __future__ import annotations

import hashlib

from .program import Literal, Program, Value

SPLITS = ("train", "validation", "test")
HELD_OUT = ("validation", "test")
# Share of structures in each held-out split (of every category; train holds the rest).
HELD_OUT_SHARE = 0.1
# Part of the hash: changing it moves every structure to a new split (a new dataset version).
SPLIT_SALT = "jax-stablehlo-pairs/structure-split/1"
_SCALE = 10_000


def structure_key(structure: str) -> str:
    """The ``structure`` column: 16 hex digits of sha256 of a structure's text."""
    return hashlib.sha256(structure.encode()).hexdigest()[:16]


def split_of(key: str) -> str:
    """The split every program of structure ``key`` belongs to."""
    h = int.from_bytes(hashlib.sha256(f"{SPLIT_SALT}:{key}".encode()).digest()[:8], "big") % _SCALE
    share = round(HELD_OUT_SHARE * _SCALE)
    return HELD_OUT[h // share] if h < share * len(HELD_OUT) else "train"


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    return split


def program_structure(program: Program) -> str:
    """An op-table program's structure: ops in order, each operand as where it comes from.

    Inputs are ``in0, in1, ...`` in argument order, results ``s0, s1, ...`` in statement order,
    literals ``lit``; shapes, dtypes, names, literal values and parameters are left out.
    """
    names = {v.name: f"in{i}" for i, v in enumerate(program.inputs)}
    lines = [f"{program.category}"]
    for i, statement in enumerate(program.statements):
        operands = ",".join("lit" if isinstance(o, Literal) else names[o.name] for o in statement.operands)
        lines.append(f"{statement.op.name}({operands})")
        names[statement.result.name] = f"s{i}"
    lines.append("return " + ",".join(names[v.name] for v in program.outputs if isinstance(v, Value)))
    return "\n".join(lines)
