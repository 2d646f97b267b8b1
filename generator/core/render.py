"""Rendering a typed program as self-contained Python source. Draws no random numbers."""

from __future__ import annotations

from .naming import summary_line
from .ops import GUARDS
from .ops.multi_device import MESH_HEADER
from .program import Literal, Operand, Program, Statement, Value
from .types import KEY_IMPLS

HEADER = "import jax\nimport jax.numpy as jnp\nfrom jax import lax\n"

_DTYPE_EXPR = {
    "float32": "jnp.float32",
    "float16": "jnp.float16",
    "bfloat16": "jnp.bfloat16",
    "int32": "jnp.int32",
    "uint32": "jnp.uint32",
    "int8": "jnp.int8",
    "bool": "jnp.bool_",
    "complex64": "jnp.complex64",
    # typed PRNG keys: the implementation named, not the default of whoever runs the source
    **{name: f'jax.random.key_dtype("{impl}")' for name, impl in KEY_IMPLS.items()},
}


def _operand_text(operand: Operand, guard: str | None) -> str:
    if isinstance(operand, Literal):
        return operand.text
    if guard is None:
        return operand.name
    kind = "float" if operand.type.is_float else "int"
    return GUARDS[guard][kind].format(v=operand.name)


LOW_PRECISION = ("bfloat16", "float16")


def _upcast(stmt: Statement) -> str | None:
    """The low-precision dtype an ``upcast`` op computes in float32 and casts back to, if any."""
    first = stmt.operands[0]
    if stmt.op.upcast and first.type.dtype in LOW_PRECISION and stmt.result.type.dtype == first.type.dtype:
        return first.type.dtype
    return None


def render_statement(stmt: Statement) -> list[str]:
    """The lines of one statement: any helper lines of a multi-line template, then the assignment.

    An ``upcast`` op on bfloat16/float16 operands computes in float32 and casts back, as real
    code writes softmax, norms and losses (``hidden_f32 = hidden.astype(jnp.float32)`` first).
    """
    guards = stmt.op.guards + (None,) * (len(stmt.operands) - len(stmt.op.guards))
    low = _upcast(stmt)
    upcasts: dict[str, str] = {}
    operands = []
    for o in stmt.operands:
        if low and isinstance(o, Value) and o.type.dtype == low:
            wide = Value(f"{o.name}_f32", o.type.with_dtype("float32"))
            upcasts.setdefault(wide.name, f"{wide.name} = {o.name}.astype(jnp.float32)")
            o = wide
        operands.append(o)
    args = [_operand_text(o, g) for o, g in zip(operands, guards)]
    *prelude, expr = stmt.op.template.format(*args, r=stmt.result.name, **stmt.param_dict).split("\n")
    if low:
        expr = f"({expr}).astype({_DTYPE_EXPR[low]})"
    return [*upcasts.values(), *prelude, f"{stmt.result.name} = {expr}"]


def _type_text(t, symbols: dict[int, str]) -> str:
    dims = [symbols.get(d, str(d)) if i == 0 else str(d) for i, d in enumerate(t.shape)]
    if t.is_key:  # "a PRNG key", "PRNG keys[8]"; another implementation than JAX's default named
        impl = "" if KEY_IMPLS[t.dtype] == "threefry2x32" else f" ({KEY_IMPLS[t.dtype]})"
        return (f"PRNG keys[{', '.join(dims)}]" if dims else "a PRNG key") + impl
    return f"{t.dtype}[{', '.join(dims)}]"


def render_docstring(program: Program) -> list[str]:
    """The docstring of a documented function: what it computes (by its name's verb), and
    the shape and dtype of every argument and output (true by construction)."""
    symbols = dict(program.symbolic_dims) if program.symbolic_dims else {}
    lines = [f'"""{summary_line(program.function_name, [v.name for v in program.inputs])}', "", "Args:"]
    lines += [f"  {v.name}: {_type_text(v.type, symbols)}." for v in program.inputs]
    lines += ["", "Returns:"]
    outs = [_type_text(v.type, symbols) for v in program.outputs]
    lines.append(f"  {outs[0]}." if len(outs) == 1 else f"  A tuple of {', '.join(outs)}.")
    return [*lines, '"""']


def render_function(program: Program) -> str:
    """The ``def`` of the program's function alone."""
    if program.type_hints:
        params = ", ".join(f"{v.name}: jax.Array" for v in program.inputs)
        n = len(program.outputs)
        returns = " -> jax.Array" if n == 1 else f" -> tuple[{', '.join(['jax.Array'] * n)}]"
    else:
        params, returns = ", ".join(v.name for v in program.inputs), ""
    body = [f"    {line}" if line else "" for line in (render_docstring(program) if program.docstring else [])]
    body += [f"    {line}" for s in program.statements for line in render_statement(s)]
    body.append(f"    return {', '.join(v.name for v in program.outputs)}")
    return "\n".join([f"def {program.function_name}({params}){returns}:", *body]) + "\n"


def _shape_text(shape: tuple[int, ...], symbols: dict[int, str]) -> str:
    dims = [symbols.get(d, str(d)) if i == 0 else str(d) for i, d in enumerate(shape)]
    return f"({dims[0]},)" if len(dims) == 1 else f"({', '.join(dims)})"


def render_example_args(program: Program) -> str:
    symbols = dict(program.symbolic_dims)
    lines = ["def example_args():"]
    used = sorted({symbols[v.type.shape[0]] for v in program.inputs if v.type.shape and v.type.shape[0] in symbols})
    if used:
        lines.append(f"    {', '.join(used)}, = jax.export.symbolic_shape({', '.join(used)!r})")
    specs = [
        f"        jax.ShapeDtypeStruct({_shape_text(v.type.shape, symbols)}, {_DTYPE_EXPR[v.type.dtype]}),"
        for v in program.inputs
    ]
    return "\n".join([*lines, "    return (", *specs, "    )"]) + "\n"


def render_source(program: Program) -> str:
    """Self-contained module text: imports, the function, and ``example_args()``.

    ``jax.jit(<function>).lower(*example_args())`` lowers exactly as the dataset row says.
    """
    header = HEADER + MESH_HEADER if program.host_devices > 1 else HEADER
    return "\n\n".join([header, render_function(program), render_example_args(program)])
