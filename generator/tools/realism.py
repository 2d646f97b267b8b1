"""How the programs read: dead statements, op-table function names, sizes, docstrings and hints.

Pure functions over rows (dicts with the dataset's columns), built on ``ast`` alone: the
``stats`` command reads text and must not import JAX. These measure whether synthetic
programs read like real code:

- dead statements: top-level statements of the function body whose value never reaches the
  ``return`` (``jax.jit`` drops them);
- op-table names: function names that are op names of the generator's table joined by
  underscores (``sum_multiply_polynomial``), and those that name an op whose statement is dead;
- sizes: the largest input dimension, input dtypes, and how many values a function returns;
- docstrings and type hints.
"""

from __future__ import annotations

import ast
import re
import statistics
import string
from collections import Counter
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

from ..core.models import MODEL_CATEGORIES
from ..core.naming import name_parses
from ..core.ops import CATEGORIES, GUARDS, OPS_BY_NAME, ops_for
from ..core.sampler import GLUE_OPS

# A name the generator's own naming ends with when a program uses one distinct op (``abs_fn``).
LARGE_DIM = 128

_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


# --- names a statement reads and writes -----------------------------------------------------


def _params(args: ast.arguments) -> list[ast.arg]:
    every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
    return [a for a in every if a is not None]


def _collect(node: ast.AST, loads: set[str], stores: set[str]) -> None:
    """Names ``node`` reads (``loads``) and binds or mutates (``stores``) in the enclosing scope.

    A nested scope (``def``, ``lambda``, ``class``, comprehension) reads only its free names:
    its parameters and the names it binds itself are its own. A ``def`` or ``class`` binds its
    name; ``x[i] = ...`` and ``x.a = ...`` mutate ``x`` (a read and a write).
    """
    if isinstance(node, ast.Name):
        (loads if isinstance(node.ctx, ast.Load) else stores).add(node.id)
        return
    if isinstance(node, _SCOPES) or isinstance(node, _COMPREHENSIONS):
        inner_loads: set[str] = set()
        inner_stores: set[str] = set()
        own: set[str] = set()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            own = {a.arg for a in _params(node.args)}
            for default in [*node.args.defaults, *(d for d in node.args.kw_defaults if d is not None)]:
                _collect(default, loads, stores)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            stores.add(node.name)
            for d in node.decorator_list:
                _collect(d, loads, stores)
        if isinstance(node, ast.ClassDef):
            for b in [*node.bases, *(k.value for k in node.keywords)]:
                _collect(b, loads, stores)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for a in _params(node.args):
                if a.annotation is not None:
                    _collect(a.annotation, loads, stores)
            if node.returns is not None:
                _collect(node.returns, loads, stores)
        if isinstance(node, ast.Lambda):
            body: list[ast.AST] = [node.body]
        elif isinstance(node, _COMPREHENSIONS):
            body = [*node.generators, *([node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt])]
        else:
            body = list(node.body)
        for child in body:
            _collect(child, inner_loads, inner_stores)
        loads |= inner_loads - inner_stores - own
        return
    if isinstance(node, (ast.Global, ast.Nonlocal)):
        return
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        stores.update((a.asname or a.name).split(".")[0] for a in node.names)
        return
    if isinstance(node, (ast.Attribute, ast.Subscript)) and not isinstance(node.ctx, ast.Load):
        base = node.value
        while isinstance(base, (ast.Attribute, ast.Subscript)):
            base = base.value
        if isinstance(base, ast.Name):
            stores.add(base.id)
    if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
        loads.add(node.target.id)
    for child in ast.iter_child_nodes(node):
        _collect(child, loads, stores)


def _uses_and_defs(stmt: ast.stmt) -> tuple[set[str], set[str]]:
    loads: set[str] = set()
    stores: set[str] = set()
    _collect(stmt, loads, stores)
    return loads, stores


def _killed(stmt: ast.stmt) -> set[str]:
    """Names ``stmt`` surely rebinds (so earlier values of them are not read through it)."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {stmt.name}
    if isinstance(stmt, ast.Assign):
        return {
            n.id for t in stmt.targets for n in ast.walk(t) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
        }
    if isinstance(stmt, ast.AnnAssign) and stmt.value is not None and isinstance(stmt.target, ast.Name):
        return {stmt.target.id}
    return set()


def _walk_own_scope(node: ast.AST) -> Iterable[ast.AST]:
    """``ast.walk`` that does not enter nested functions, lambdas or classes."""
    todo = [node]
    while todo:
        n = todo.pop()
        yield n
        todo.extend(c for c in ast.iter_child_nodes(n) if not isinstance(c, _SCOPES))


def _has_effect(stmt: ast.stmt) -> bool:
    """A statement that matters whatever it binds: it returns, raises, yields, asserts, or
    evaluates an expression for its effect (a bare call such as ``print(x)``)."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return False
    for n in _walk_own_scope(stmt):
        if isinstance(n, (ast.Return, ast.Raise, ast.Yield, ast.YieldFrom, ast.Assert)):
            return True
        if isinstance(n, ast.Expr) and not isinstance(n.value, ast.Constant):
            return True
    return False


def _root(node: ast.AST) -> str | None:
    """``name`` of ``name.attr...(...)...``, if ``node`` is such an attribute or call chain."""
    if not isinstance(node, (ast.Attribute, ast.Call)):
        return None
    while isinstance(node, (ast.Call, ast.Attribute, ast.Subscript)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _mutated(stmt: ast.stmt, local: set[str]) -> set[str]:
    """Values of the function a statement changes through a method: ``f.defvjp(fwd, bwd)`` as
    a bare call, ``@f.defjvp`` as a decorator. Such a statement matters only if ``f`` does."""
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call) and isinstance(stmt.value.func, ast.Attribute):
        roots = {_root(stmt.value.func)}
    elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        roots = {_root(d) for d in stmt.decorator_list if isinstance(d, (ast.Attribute, ast.Call))}
    else:
        return set()
    return {r for r in roots if r in local}


def find_function(tree: ast.Module, function_name: str) -> ast.FunctionDef | ast.AsyncFunctionDef:
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == function_name:
            return node
    raise ValueError(f"no top-level function {function_name!r} in the source")


def _body(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[ast.stmt]:
    """The function's top-level statements, without its docstring."""
    body = list(fn.body)
    if ast.get_docstring(fn, clean=False) is not None:
        body = body[1:]
    return body


def liveness(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[tuple[ast.stmt, bool]]:
    """Each top-level statement of ``fn``'s body (docstring left out) with whether it is live.

    Backward liveness over the top-level statements: the ``return`` is live; a statement is
    live if it binds a name a later live statement reads, or if it has an effect of its own
    (a bare call, ``assert``, ``raise``, a nested ``return``...). A method call or decorator on
    a value the function binds (``f.defvjp(fwd, bwd)``, ``@f.defjvp``) changes that value: it
    is live if the value is read later, like an assignment to it. ``if``/``for``/``while``/
    ``with``/``try`` are one statement each, reading and binding every name of their subtree;
    they may not run, so they rebind nothing for sure. A nested ``def`` binds its name and reads
    its free names. Statements after a top-level ``return`` are dead (unreachable). The
    function's arguments are read by statements but bound by none: they never make one live.
    """
    body = _body(fn)
    reached = next((i + 1 for i, s in enumerate(body) if isinstance(s, ast.Return)), len(body))
    names = [_uses_and_defs(stmt) for stmt in body]
    local = {n for _, defs in names for n in defs}
    live_names: set[str] = set()
    verdicts: list[bool] = [False] * len(body)
    for i in reversed(range(reached)):
        stmt = body[i]
        uses, defs = names[i]
        mutated = _mutated(stmt, local)
        defs = defs | mutated
        live = (
            isinstance(stmt, ast.Return) or bool(defs & live_names) or not defs or (not mutated and _has_effect(stmt))
        )
        verdicts[i] = live
        if live:
            live_names = (live_names - _killed(stmt)) | uses
    return list(zip(body, verdicts))


def dead_statements(source: str, function_name: str) -> tuple[int, int]:
    """``(dead, total)`` top-level statements of ``function_name``'s body in ``source``.

    Raises:
      SyntaxError: the source does not parse.
      ValueError: the source has no top-level function of that name.
    """
    verdicts = liveness(find_function(ast.parse(source), function_name))
    return sum(not live for _, live in verdicts), len(verdicts)


# --- function names made of op names ------------------------------------------------------


_NAME = r"[A-Za-z_]\w*"
_NUMBER = r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


@cache
def _operand_pattern() -> str:
    """An operand as the renderer writes one: a name, a literal, or a guarded name."""
    guarded = {re.escape(text).replace(re.escape("{v}"), _NAME) for forms in GUARDS.values() for text in forms.values()}
    return "(?:" + "|".join(sorted(guarded | {_NAME, _NUMBER}, key=len, reverse=True)) + ")"


@cache
def op_pattern(op_name: str) -> re.Pattern[str] | None:
    """The expression ``op_name``'s statement assigns to its result (its template's last
    line), as a regex: operands are names, literals or guarded names, parameters any text.
    None for a name the op table lacks."""
    if op_name not in OPS_BY_NAME:
        return None
    last = OPS_BY_NAME[op_name].template.split("\n")[-1]
    parts, seen = [], set()
    for literal, field, _, _ in string.Formatter().parse(last):
        parts.append(re.escape(literal))
        if field is None:
            continue
        group = f"f_{field}"
        if field in seen:
            parts.append(f"(?P={group})")
            continue
        seen.add(field)
        if field.isdigit():
            parts.append(f"(?P<{group}>{_operand_pattern()})")
        elif field == "r":
            parts.append(f"(?P<{group}>{_NAME})")
        else:
            parts.append(f"(?P<{group}>.*?)")
    return re.compile("".join(parts), re.DOTALL)


def _assigned(source: str, stmt: ast.stmt) -> tuple[str, str] | None:
    """``(name, expression text)`` of ``name = expression``; None for another statement."""
    if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)):
        return None
    return stmt.targets[0].id, ast.get_source_segment(source, stmt.value) or ""


# An op computed in float32 and cast back (``render``'s upcast): ``(<expression>).astype(jnp.<dtype>)``.
_CAST_BACK_RE = re.compile(r"\((?P<inner>.*)\)\.astype\(jnp\.(?:bfloat16|float16)\)", re.DOTALL)


def _match(assigned: tuple[str, str] | None, op_name: str) -> re.Match[str] | None:
    pattern = op_pattern(op_name)
    if assigned is None or pattern is None:
        return None
    target, text = assigned
    m = pattern.fullmatch(text)
    if m is None and OPS_BY_NAME[op_name].upcast and (cast := _CAST_BACK_RE.fullmatch(text)):
        m = pattern.fullmatch(cast.group("inner"))
    return m if m is not None and m.groupdict().get("f_r", target) == target else None


def statement_is_op(source: str, stmt: ast.stmt, op_name: str) -> bool:
    """``stmt`` is ``result = <op_name's expression>`` (the statement that makes the op's value)."""
    return _match(_assigned(source, stmt), op_name) is not None


def dead_named_ops(
    source: str, function_name: str, category: str | None = None, op_names: Iterable[str] | None = None
) -> list[str]:
    """The ops ``function_name`` names whose every statement in the function is dead
    (statements are matched to ops by ``statement_ops``)."""
    parses = name_parses(function_name, op_names)
    if not parses:
        return []
    return _dead_ops(source, liveness(find_function(ast.parse(source), function_name)), parses, category)


@cache
def _fixed_chars(op_name: str) -> int:
    """Characters of ``op_name``'s expression that are not operands or parameters."""
    last = OPS_BY_NAME[op_name].template.split("\n")[-1]
    return sum(len(literal) for literal, _, _, _ in string.Formatter().parse(last))


def _specificity(op_name: str, m: re.Match[str]) -> int:
    """How well ``m`` fits ``op_name``: its fixed characters, less one for each operand that
    is a number (more often a parameter) and each parameter that is a bare name (more often an
    operand)."""
    odd = sum(
        re.fullmatch(_NUMBER if field[2:].isdigit() else _NAME, text) is not None
        for field, text in m.groupdict().items()
        if field != "f_r"
    )
    return _fixed_chars(op_name) - odd


@cache
def _candidates(category: str | None) -> tuple[str, ...]:
    """The ops a program of ``category`` draws from: its own and the glue ops (all if unknown)."""
    if category not in CATEGORIES:
        return tuple(OPS_BY_NAME)
    return tuple(dict.fromkeys(op.name for op in ops_for(category) + GLUE_OPS))


def statement_ops(source: str, stmt: ast.stmt, category: str | None = None) -> list[str]:
    """The ops whose expression ``stmt`` assigns, among those a program of ``category`` draws
    from, the most specific only: ``d = r - 3`` is ``subtract`` (``{0} - {1}``), not ``compare``
    (``{0} {cmp} {1}``), though both match; ``jnp.mean(x, axis=0)`` is ``mean`` in a reduction
    program, whatever the dynamic-shapes op of the same text."""
    return _ops_of(_assigned(source, stmt), category)


def _ops_of(assigned: tuple[str, str] | None, category: str | None) -> list[str]:
    hits = {op: m for op in _candidates(category) if (m := _match(assigned, op)) is not None}
    scores = {op: _specificity(op, m) for op, m in hits.items()}
    top = max(scores.values(), default=0)
    return [op for op, score in scores.items() if score == top]


def _dead_ops(
    source: str, verdicts: list[tuple[ast.stmt, bool]], parses: list[list[str]], category: str | None = None
) -> list[str]:
    """The named ops that have statements in ``verdicts``, all of them dead. A statement is an
    op's if ``statement_ops`` says so. The name is read as the first of ``parses`` whose every
    op has a statement (``floor_divide`` names one op in a function that floor-divides, two in
    one that takes a floor and divides)."""
    named = {op for p in parses for op in p}
    mine: dict[str, list[bool]] = {op: [] for op in named}
    for stmt, live in verdicts:
        assigned = _assigned(source, stmt)
        if any(_match(assigned, op) for op in named):  # the match against every op only when needed
            for op in named.intersection(_ops_of(assigned, category)):
                mine[op].append(live)
    chosen = next((p for p in parses if all(mine[op] for op in p)), parses[0])
    return [op for op in chosen if mine[op] and not any(mine[op])]


# --- the summary ----------------------------------------------------------------------------


def nearest_rank(values: list[float], q: float) -> float:
    """The ``q``-th percentile by nearest rank (``stats.percentiles`` reports several)."""
    if not values:
        return float("nan")
    values = sorted(values)
    return float(values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))])


def _share(part: int, whole: int) -> float:
    return part / whole if whole else float("nan")


def largest_input_dim(input_signature: Iterable[Mapping[str, Any]]) -> int:
    """The largest static dimension over the inputs (-1, symbolic, left out); 1 if none."""
    return max((d for spec in input_signature for d in spec["shape"] if d >= 0), default=1)


def returned_values(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """How many values ``fn``'s last top-level ``return`` gives: the items of a tuple, else one
    (a dict or other pytree is one value, as its caller sees it)."""
    returns = [s for s in _body(fn) if isinstance(s, ast.Return)]
    if not returns or returns[-1].value is None:
        return 0
    value = returns[-1].value
    return len(value.elts) if isinstance(value, ast.Tuple) else 1


def has_type_hints(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return fn.returns is not None or any(a.annotation is not None for a in _params(fn.args))


class RealismTally:
    """The measures of ``realism_summary``, one row at a time (``add``), then ``summary()``."""

    def __init__(self, op_names: Iterable[str] | None = None):
        self.op_names = set(OPS_BY_NAME) if op_names is None else set(op_names)
        self.rows = self.unparsed = 0
        self.dead: Counter = Counter()  # category -> dead statements
        self.total: Counter = Counter()  # category -> statements
        self.rows_with_dead: Counter = Counter()  # category -> rows with a dead statement
        self.parsed: Counter = Counter()  # category -> rows parsed
        self.op_named = self.dead_named = self.docstrings = self.hints = 0
        self.largest_dims: list[int] = []
        self.dtypes: Counter = Counter()
        self.outputs: list[int] = []

    def add(self, row: Mapping[str, Any]) -> None:
        self.rows += 1
        if row.get("input_signature") is not None:
            self.largest_dims.append(largest_input_dim(row["input_signature"]))
            self.dtypes.update(spec["dtype"] for spec in row["input_signature"])
        source, name = row["python_source"], row["function_name"]
        try:
            fn = find_function(ast.parse(source), name)
        except (SyntaxError, ValueError):
            self.unparsed += 1
            if row.get("output_signature") is not None:
                self.outputs.append(len(row["output_signature"]))
            return
        self.outputs.append(returned_values(fn))
        category = row.get("category") or "?"
        verdicts = liveness(fn)
        dead = sum(not live for _, live in verdicts)
        self.parsed[category] += 1
        self.dead[category] += dead
        self.total[category] += len(verdicts)
        self.rows_with_dead[category] += dead > 0
        self.docstrings += ast.get_docstring(fn) is not None
        self.hints += has_type_hints(fn)
        # a model's function is named by idiom (train_step, forward): op-table naming is not its question
        parses = name_parses(name, self.op_names) if category not in MODEL_CATEGORIES else []
        if parses:
            self.op_named += 1
            self.dead_named += bool(_dead_ops(source, verdicts, parses, row.get("category")))

    @staticmethod
    def _dead(dead: int, total: int, rows_with_dead: int, rows: int) -> dict[str, Any]:
        return {
            "statements": total,
            "dead": dead,
            "share": _share(dead, total),
            "rows": rows,
            "rows_with_dead": rows_with_dead,
            "rows_share": _share(rows_with_dead, rows),
        }

    def summary(self) -> dict[str, Any]:
        parsed = sum(self.parsed.values())
        n_inputs = sum(self.dtypes.values())
        dims, outs = self.largest_dims, self.outputs
        return {
            "rows": self.rows,
            "unparsed": self.unparsed,
            "dead": self._dead(
                sum(self.dead.values()), sum(self.total.values()), sum(self.rows_with_dead.values()), parsed
            ),
            "dead_by_category": {
                c: self._dead(self.dead[c], self.total[c], self.rows_with_dead[c], self.parsed[c])
                for c in sorted(self.parsed)
            },
            "op_named": {"rows": self.op_named, "share": _share(self.op_named, parsed)},
            "dead_named_op": {"rows": self.dead_named, "share": _share(self.dead_named, parsed)},
            "docstring": {"rows": self.docstrings, "share": _share(self.docstrings, parsed)},
            "type_hints": {"rows": self.hints, "share": _share(self.hints, parsed)},
            "largest_input_dim": {
                "median": statistics.median(dims) if dims else float("nan"),
                "p95": nearest_rank(dims, 95),
                "max": max(dims, default=float("nan")),
                "large_rows": sum(d >= LARGE_DIM for d in dims),
                "large_share": _share(sum(d >= LARGE_DIM for d in dims), len(dims)),
            },
            "input_dtypes": {d: n / n_inputs for d, n in sorted(self.dtypes.items(), key=lambda kv: (-kv[1], kv[0]))},
            "outputs": {
                "median": statistics.median(outs) if outs else float("nan"),
                "p95": nearest_rank(outs, 95),
                "counts": dict(sorted(Counter(outs).items())),
            },
        }


def realism_summary(rows: Iterable[Mapping[str, Any]], op_names: Iterable[str] | None = None) -> dict[str, Any]:
    """How the programs of ``rows`` read (see the module docstring); shares of parsed rows.

    Keys: ``dead`` (top-level statements and their dead share; rows with at least one dead
    statement) and ``dead_by_category``; ``op_named`` (rows whose function name is op names
    joined by underscores) and ``dead_named_op`` (rows whose name names an op whose statement
    is dead); ``docstring`` and ``type_hints``; ``largest_input_dim`` (median, p95, rows with a
    dimension of at least 128), ``input_dtypes`` (share of all arguments) and ``outputs``
    (values returned per function). ``unparsed`` counts rows whose source has no such function.
    """
    tally = RealismTally(op_names)
    for row in rows:
        tally.add(row)
    return tally.summary()
