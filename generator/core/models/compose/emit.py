"""One text emitter for every block in every style.

A block is written once, as data: its parameters (``Param``), its library layers (``Dense``,
``Norm``, ``Cell``, ``Conv``, ``GroupNorm``: a library class or hand-written, as the program's
idiom says), its child blocks and one body in a style-neutral notation:

- ``$name`` is the value of the block's parameter ``name``;
- ``@name(args)`` calls the child (block or layer) ``name``;
- ``@name*(args)`` calls every layer of the repeated child ``name`` in turn (a ``Stack``): the
  first argument is the carried value, the line must read ``x = @name*(x, ...)`` (or
  ``x, aux = @name*(x, ...)`` when each layer also returns losses, which are averaged, or
  ``x, cache = @name*(x, cache, ...)`` when each layer reads and returns its own part of a
  per-layer state such as a KV cache: a list over layers, or stacked and scanned as ``xs``);
- a line starting with ``%`` pins an activation's layout (``% x: batch, seq, embed``): written
  as ``x = constrain(x, ...)`` in a sharded program's batched code, dropped elsewhere;
- ``config.`` reads the model's config dataclass.

``Emitter(style, idioms, config_name).emit(block)`` turns a block into plain JAX (an ``init_*`` function returning a parameter dict
and an apply function), a Flax NNX ``nnx.Module`` or an Equinox ``eqx.Module``. Equinox modules
see one example (their caller vmaps over the batch), so bodies index from the end (``...``,
``axis=-1``) and work at any batch rank.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

STYLES = ("jax", "flax_nnx", "equinox")


@dataclass(frozen=True)
class Param:
    """A parameter array: ``shape`` holds config expressions; ``init`` is ``"normal"`` (scaled by
    ``fan_in ** -0.5``), ``"ones"`` or ``"zeros"``; ``axes`` are its logical axes (sharding)."""

    name: str
    shape: tuple[str, ...]
    init: str = "normal"
    fan_in: str = ""
    axes: tuple[str | None, ...] = ()
    dtype: str = ""  # kept in this dtype whatever the model's (a float32 router)


@dataclass(frozen=True)
class Dense:
    """A projection ``(..., d_in) -> (..., d_out)``: a library layer (``nnx.Linear``,
    ``eqx.nn.Linear``) or a hand-written weight, as the program's idiom says."""

    name: str
    d_in: str
    d_out: str
    axes: tuple[str | None, str | None]
    bias: bool = False
    rank: int = 2  # of its input in one example (an Equinox library layer is vmapped over the rest)


@dataclass(frozen=True)
class Norm:
    """RMSNorm or LayerNorm over the last axis of width ``dim``; ``rank`` is the rank of its
    input in one example (an Equinox library norm is vmapped over the other axes)."""

    name: str
    kind: str  # "rms" | "layer"
    dim: str
    rank: int = 2


# --- vision leaves: convolutions and GroupNorm (written by the ``_vision_*`` methods) ----------


@dataclass(frozen=True)
class Conv:
    """A 2-D convolution, "SAME" padded: ``nnx.Conv`` / ``eqx.nn.Conv2d`` or a hand-written HWIO
    kernel through the module's ``conv2d`` helper (``lax.conv_general_dilated``). Feature maps
    are channels-last and batched in plain JAX and Flax, one channel-first map in Equinox.
    ``kernel`` and ``stride`` are expressions; ``depthwise`` convolves each channel alone."""

    name: str
    c_in: str
    c_out: str
    kernel: str = "3"
    stride: str = "1"
    depthwise: bool = False
    bias: bool = True


@dataclass(frozen=True)
class GroupNorm:
    """GroupNorm over the channels of a feature map (``config.num_groups`` groups):
    ``nnx.GroupNorm`` / ``eqx.nn.GroupNorm`` or the module's ``group_norm`` helper."""

    name: str
    dim: str


# --- end of vision leaves --------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """A library recurrent cell run over the sequence (``nnx.RNN`` of ``nnx.LSTMCell`` /
    ``nnx.GRUCell``; ``eqx.nn.LSTMCell`` / ``GRUCell`` scanned by a helper); only written in
    the library idiom of Flax NNX and Equinox."""

    name: str
    kind: str  # "lstm" | "gru"
    reverse: bool = False


@dataclass(frozen=True)
class Stack:
    """``count`` copies of ``block``: a Python loop, or ``lax.scan`` over stacked parameters
    (``remat``: ``""``, ``"checkpoint"`` or a ``jax.checkpoint_policies`` name)."""

    name: str
    block: Block
    count: str
    scan: bool = False
    remat: str = ""


@dataclass(frozen=True)
class Block:
    """A model component: parameters, children, a call signature and one body."""

    cls: str
    doc: str
    args: tuple[str, ...]
    body: str
    params: tuple[Param, ...] = ()
    children: tuple[Dense | Norm | Cell | Conv | GroupNorm | Block | Stack, ...] = field(default=())
    returns: str = "jax.Array"
    name: str = ""  # its attribute under its parent
    init_args: tuple[str, ...] = ()  # int arguments its constructor takes besides the config (widths)
    bind: tuple[str, ...] = ()  # the values its parent passes them (config expressions)
    arg_types: tuple[tuple[str, str], ...] = ()  # annotations of arguments that are not arrays

    @property
    def fn(self) -> str:
        """The class name in snake case (acronyms kept whole: ``MoE`` -> ``moe``, ``MLP`` -> ``mlp``)."""
        words = re.sub(r"MoE|NeXt|[A-Z0-9]+(?![a-z])", lambda m: m.group(0).capitalize(), self.cls)
        return re.sub(r"(?<!^)(?=[A-Z])", "_", words).lower()

    def child(self, name: str) -> Dense | Norm | Block | Stack:
        for c in self.children:
            if c.name == name:
                return c
        raise KeyError(f"{self.cls} has no child {name!r}")


@dataclass(frozen=True)
class Idioms:
    """How a program writes what every style can write several ways."""

    library_layers: bool  # nnx.Linear / eqx.nn.Linear and library norms (not in plain JAX)
    einsum: bool  # a hand-written projection as einsum rather than ``@``
    sharded: Mapping[str, str | None] | None = None  # logical axis -> mesh axis; None: one device


def _norm_helper_call(norm: Norm, arg: str, param: Callable[[str], str]) -> str:
    if norm.kind == "rms":
        return f"rms_norm({arg}, {param(norm.name)}, config.norm_eps)"
    return f"layer_norm({arg}, {param(norm.name)}, {param(norm.name + '_bias')}, config.norm_eps)"


def _split_call(text: str, start: int) -> tuple[str, int]:
    """The argument text of the call whose ``(`` is at ``start``, and the index after ``)``."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] in "([{":
            depth += 1
        elif text[i] in ")]}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i], i + 1
    raise ValueError(f"unbalanced call in {text!r}")


class Emitter:
    """Writes blocks in one style with one set of idioms."""

    def __init__(self, style: str, idioms: Idioms, config_name: str):
        if style not in STYLES:
            raise ValueError(f"unknown style {style!r}; valid: {', '.join(STYLES)}")
        self.config_name = config_name
        self.style = style
        self.idioms = idioms
        self.library = idioms.library_layers and style != "jax"

    # --- names ------------------------------------------------------------------------------

    def param(self, name: str) -> str:
        return {"jax": f'params["{name}"]', "flax_nnx": f"self.{name}[...]", "equinox": f"self.{name}"}[self.style]

    def spec(self, axes: tuple[str | None, ...]) -> str:
        rules = self.idioms.sharded or {}
        mesh_axes = [rules.get(a) if a else None for a in axes]
        return "P(" + ", ".join(f'"{a}"' if a else "None" for a in mesh_axes) + ")"

    # --- the body -----------------------------------------------------------------------------

    def body(self, block: Block, indent: int) -> str:
        out = []
        for line in block.body.strip("\n").splitlines():
            stripped = line.strip()
            if stripped.startswith("%"):
                if self.idioms.sharded and self.style != "equinox":
                    pad = line[: len(line) - len(line.lstrip())]
                    name, axes = stripped[1:].split(":")
                    spec = self.spec(tuple(None if a.strip() == "None" else a.strip() for a in axes.split(",")))
                    out.append(f"{pad}{name.strip()} = constrain({name.strip()}, {spec})")
                continue
            out.extend(self.line(block, line))
        pad = " " * indent
        return "\n".join(pad + line if line.strip() else "" for line in out)

    def line(self, block: Block, line: str) -> list[str]:
        m = re.match(r"(\s*)(\w+)(?:, (\w+))? = @(\w+)\*\((.*)\)$", line)
        if m:
            pad, carry, aux, name, args = m.groups()
            return self.stack_call(block, block.child(name), pad, carry, args, aux)
        return [self.expand(block, line)]

    def expand(self, block: Block, line: str) -> str:
        """``line`` with its ``$param`` and ``@child(...)`` written out (inner calls first)."""
        line = re.sub(r"\$(\w+)", lambda m: self.param(m.group(1)), line)
        # innermost (last) call first, so a call's arguments are code when it is written
        while (m := next(reversed(list(re.finditer(r"@(\w+)\(", line))), None)) is not None:
            args, end = _split_call(line, m.end() - 1)
            call = self.call(block, block.child(m.group(1)), self.expand(block, args))
            whole = re.fullmatch(r"\s*(\w+(, \w+)* = |return )", line[: m.start()]) and not line[end:].strip()
            argument = line[: m.start()].rstrip()[-1:] in ("(", ",", "[") and line[end:].lstrip()[:1] in (")", ",", "]")
            if not (whole or argument):  # a product or a biased projection inside a larger expression
                call = _atom(call)
            line = line[: m.start()] + call + line[end:]
        return line

    def call(self, block: Block, child: Dense | Norm | Block, args: str) -> str:
        name = child.name
        if isinstance(child, Dense):
            if self.library:
                if self.style == "flax_nnx":
                    return f"self.{name}({args})"
                return _vmapped(f"self.{name}", child.rank) + f"({args})"
            out = (
                f'jnp.einsum("...d,df->...f", {args}, {self.param(name)})'
                if self.idioms.einsum
                else f"{_atom(args)} @ {self.param(name)}"
            )
            return out + (f" + {self.param(name + '_bias')}" if child.bias else "")
        if isinstance(child, Cell):
            if self.style == "flax_nnx":
                return f"run_rnn(self.{name}, {args})"
            reverse = ", reverse=True" if child.reverse else ""
            return f"scan_cell(self.{name}, {args}{reverse})"
        if isinstance(child, Norm):
            if self.library:
                if self.style == "flax_nnx":
                    return f"self.{name}({args})"
                return _vmapped(f"self.{name}", child.rank) + f"({args})"
            return _norm_helper_call(child, args, self.param)
        if isinstance(child, (Conv, GroupNorm)):
            return self._vision_call(child, args)
        if self.style == "jax":
            config = ", config" if reads_config(child) else ""
            return f"{child.fn}({self.param(name)}, {args}{config})"
        return f"self.{name}({args})"

    def stack_call(
        self, block: Block, stack: Stack, pad: str, carry: str, args: str, aux: str | None = None
    ) -> list[str]:
        """The loop over a stack's layers; with ``aux``, each layer returns ``(carry, aux)`` and
        the layers' aux values are averaged."""
        first, _, rest = args.partition(",")
        if first.strip() != carry:
            raise ValueError(f"a stack call carries its first argument: {carry} = @{stack.name}*({args})")
        rest = rest.strip()
        if aux is not None and aux in [a.strip() for a in rest.split(",")]:
            return self.threaded_stack_call(stack, pad, carry, aux, rest)
        extra = (", " + rest) if rest else ""
        config = ", config" if (self.style == "jax" and reads_config(stack.block)) else ""
        if self.style == "jax":
            apply = f"{stack.block.fn}(layer_params, {carry}{extra}{config})"
        else:
            apply = f"layer({carry}{extra})"
        if not stack.scan:
            head = (
                [f"{pad}for layer_params in {self.param(stack.name)}:"]
                if self.style == "jax"
                else [f"{pad}for layer in self.{stack.name}:"]
            )
            if aux is None:
                return [*head, f"{pad}    {carry} = {apply}"]
            return [
                f"{pad}{aux}_per_layer = []",
                *head,
                f"{pad}    {carry}, layer_{aux} = {apply}",
                f"{pad}    {aux}_per_layer.append(layer_{aux})",
                f"{pad}{aux} = jax.tree.map(lambda *values: jnp.mean(jnp.stack(values)), *{aux}_per_layer)",
            ]
        decorator = []
        if stack.remat == "checkpoint":
            decorator = [f"{pad}@jax.checkpoint"]
        elif stack.remat:
            decorator = [f"{pad}@functools.partial(jax.checkpoint, policy=jax.checkpoint_policies.{stack.remat})"]
        returned = f"{apply}" if aux else f"{apply}, None"
        if self.style == "jax":
            head, xs = [], self.param(stack.name)
            body = [f"{pad}def body({carry}, layer_params):", f"{pad}    return {returned}"]
        elif self.style == "flax_nnx":
            head = [f"{pad}graphdef, layer_states = nnx.split(self.{stack.name})"]
            xs = "layer_states"
            body = [
                f"{pad}def body({carry}, layer_state):",
                f"{pad}    layer = nnx.merge(graphdef, layer_state)",
                f"{pad}    return {returned}",
            ]
        else:
            head = [f"{pad}layer_params, layer_static = eqx.partition(self.{stack.name}, eqx.is_array)"]
            xs = "layer_params"
            body = [
                f"{pad}def body({carry}, params):",
                f"{pad}    layer = eqx.combine(params, layer_static)",
                f"{pad}    return {returned}",
            ]
        if aux is None:
            return [*head, "", *decorator, *body, "", f"{pad}{carry}, _ = lax.scan(body, {carry}, {xs})"]
        return [
            *head,
            "",
            *decorator,
            *body,
            "",
            f"{pad}{carry}, {aux}_per_layer = lax.scan(body, {carry}, {xs})",
            f"{pad}{aux} = jax.tree.map(jnp.mean, {aux}_per_layer)",
        ]

    def threaded_stack_call(self, stack: Stack, pad: str, carry: str, state: str, rest: str) -> list[str]:
        """The loop over a stack's layers, each reading and returning its own part of ``state``
        (a list over the layers, or stacked along a leading axis and scanned with the layers)."""
        per_layer = f"layer_{state}"
        args = ", ".join(per_layer if a.strip() == state else a.strip() for a in rest.split(","))
        config = ", config" if (self.style == "jax" and reads_config(stack.block)) else ""
        layer = "layer_params" if self.style == "jax" else "layer"
        apply = (
            f"{stack.block.fn}(layer_params, {carry}, {args}{config})"
            if self.style == "jax"
            else f"layer({carry}, {args})"
        )
        if not stack.scan:
            layers = self.param(stack.name) if self.style == "jax" else f"self.{stack.name}"
            return [
                f"{pad}new_{state} = []",
                f"{pad}for {layer}, {per_layer} in zip({layers}, {state}):",
                f"{pad}    {carry}, {per_layer} = {apply}",
                f"{pad}    new_{state}.append({per_layer})",
                f"{pad}{state} = new_{state}",
            ]
        if self.style == "jax":
            head, xs, unpack = [], self.param(stack.name), [f"{pad}    layer_params, {per_layer} = xs"]
        elif self.style == "flax_nnx":
            head, xs = [f"{pad}graphdef, layer_states = nnx.split(self.{stack.name})"], "layer_states"
            unpack = [f"{pad}    layer_state, {per_layer} = xs", f"{pad}    layer = nnx.merge(graphdef, layer_state)"]
        else:
            head = [f"{pad}layer_params, layer_static = eqx.partition(self.{stack.name}, eqx.is_array)"]
            xs = "layer_params"
            unpack = [f"{pad}    params, {per_layer} = xs", f"{pad}    layer = eqx.combine(params, layer_static)"]
        return [
            *head,
            "",
            f"{pad}def body({carry}, xs):",
            *unpack,
            f"{pad}    {carry}, {per_layer} = {apply}",
            f"{pad}    return {carry}, {per_layer}",
            "",
            f"{pad}{carry}, {state} = lax.scan(body, {carry}, ({xs}, {state}))",
        ]

    # --- declarations -------------------------------------------------------------------------

    def init_value(self, p: Param, key: str) -> str:
        shape = "(" + ", ".join(p.shape) + ("," if len(p.shape) == 1 else "") + ")"
        dtype = f"jnp.{p.dtype}" if p.dtype else "dtype"
        if p.init == "ones":
            return f"jnp.ones({shape}, {dtype})"
        if p.init == "zeros":
            return f"jnp.zeros({shape}, {dtype})"
        atom = _atom(p.fan_in)
        scale = (f" * {atom}**-0.5" if atom == p.fan_in else f" * {atom} ** -0.5") if p.fan_in else ""
        return f"jax.random.normal({key}, {shape}, {dtype}){scale}"

    def emit(self, block: Block) -> str:
        return {"jax": self._jax, "flax_nnx": self._nnx, "equinox": self._eqx}[self.style](block)

    def _parts(self, block: Block) -> list[tuple[str, Param | Dense | Norm | Block | Stack]]:
        """What the block declares, in order: its parameters, then its children; hand-written
        layers become parameters."""
        out: list[tuple[str, Param | Dense | Norm | Block | Stack]] = [(p.name, p) for p in block.params]
        for c in block.children:
            if isinstance(c, Dense) and not self.library:
                out.append((c.name, Param(c.name, (c.d_in, c.d_out), "normal", c.d_in, c.axes)))
                if c.bias:
                    out.append((c.name + "_bias", Param(c.name + "_bias", (c.d_out,), "zeros", "", (c.axes[1],))))
            elif isinstance(c, Norm) and not self.library:
                out.append((c.name, Param(c.name, (c.dim,), "ones", "", (None,))))
                if c.kind == "layer":
                    out.append((c.name + "_bias", Param(c.name + "_bias", (c.dim,), "zeros", "", (None,))))
            elif isinstance(c, (Conv, GroupNorm)) and not self.library:
                out += [(p.name, p) for p in _vision_params(c)]
            else:
                out.append((c.name, c))
        return out

    def _reads_config(self, block: Block) -> bool:
        """Whether a module's ``__call__`` reads its config (hand-written norms read the epsilon)."""
        return "config." in block.body or (
            not self.library and any(isinstance(c, (Norm, GroupNorm)) for c in block.children)
        )

    def _random(self, item) -> bool:
        return not (isinstance(item, Param) and item.init != "normal") and not isinstance(item, (Norm, GroupNorm))

    def _signature(self, block: Block) -> str:
        types = dict(block.arg_types)
        return ", ".join(f"{a}: {types.get(a, 'jax.Array')}" for a in block.args)

    def _jax(self, block: Block) -> str:
        parts = self._parts(block)
        keyed = [n for n, item in parts if self._random(item)]
        lines = []
        if any(isinstance(i, Param) for _, i in parts):
            lines.append("dtype = jnp.dtype(config.dtype)")
        key_of = _keys(keyed, "key", lines)
        entries = []
        for name, item in parts:
            if isinstance(item, Param):
                value = self.init_value(item, key_of.get(name, ""))
            elif isinstance(item, Stack):
                init = f"lambda k: init_{item.block.fn}(k, config{_bound(item.block)})"
                keys = f"jax.random.split({key_of[name]}, {item.count})"
                value = (
                    f"jax.vmap({init})({keys})"
                    if item.scan
                    else f"[init_{item.block.fn}(k, config{_bound(item.block)}) for k in {keys}]"
                )
            else:
                value = f"init_{item.fn}({key_of[name]}, config{_bound(item)})"
            entries.append(f'    "{name}": {value},')
        init = [
            f"def init_{block.fn}(key: jax.Array, config: {self.config_name}{_init_params(block)}) -> dict:",
            f'    """The parameters of {_first_words(block.doc)[0].lower()}{_first_words(block.doc)[1:]}."""',
            *("    " + line for line in lines),
            "    return {",
            *("    " + e for e in entries),
            "    }",
        ]
        config = f", config: {self.config_name}" if reads_config(block) else ""
        args = self._signature(block)
        apply = [
            f"def {block.fn}(params: dict, {args}{config}) -> {block.returns}:",
            f'    """{block.doc}"""',
            self.body(block, 4),
        ]
        return "\n".join(init) + "\n\n\n" + "\n".join(apply) + "\n"

    def _nnx(self, block: Block) -> str:
        parts = self._parts(block)
        lines = []
        if self._reads_config(block):
            lines.append("self.config = config")
        if any(isinstance(i, (Param, Dense, Norm, Cell, Conv, GroupNorm)) for _, i in parts):
            lines.append("dtype = jnp.dtype(config.dtype)")
        for name, item in parts:
            if isinstance(item, (Conv, GroupNorm)):
                lines.append(f"self.{name} = {self._vision_layer(item, 'rngs=rngs')}")
            elif isinstance(item, Param):
                value = self.init_value(item, "rngs.params()")
                sharding = f", out_sharding={self.spec(item.axes)}" if self.idioms.sharded else ""
                lines.append(f"self.{name} = nnx.Param({value}{sharding})")
            elif isinstance(item, Dense):
                init = ""
                if self.idioms.sharded:
                    init = (
                        f", kernel_init=nnx.with_partitioning(nnx.initializers.lecun_normal(), {self.spec(item.axes)})"
                    )
                lines.append(
                    f"self.{name} = nnx.Linear({item.d_in}, {item.d_out}, use_bias={item.bias}, "
                    f"param_dtype=dtype{init}, rngs=rngs)"
                )
            elif isinstance(item, Norm):
                cls = "RMSNorm" if item.kind == "rms" else "LayerNorm"
                lines.append(
                    f"self.{name} = nnx.{cls}({item.dim}, epsilon=config.norm_eps, dtype=dtype, "
                    f"param_dtype=dtype, rngs=rngs)"
                )
            elif isinstance(item, Cell):
                cls = "LSTMCell" if item.kind == "lstm" else "GRUCell"
                reverse = ", reverse=True, keep_order=True" if item.reverse else ""
                lines.append(
                    f"self.{name} = nnx.RNN(nnx.{cls}(config.d_model, config.d_model, dtype=dtype, rngs=rngs)"
                    f"{reverse}, rngs=False)"
                )
            elif isinstance(item, Stack):
                if item.scan:
                    lines += [
                        "",
                        f"@nnx.split_rngs(splits={item.count})",
                        "@nnx.vmap(in_axes=(0,), out_axes=0"
                        + (", transform_metadata={nnx.PARTITION_NAME: None})" if self.idioms.sharded else ")"),
                        f"def create_layer(rngs: nnx.Rngs) -> {item.block.cls}:",
                        f"    return {item.block.cls}(config{_bound(item.block)}, rngs=rngs)",
                        "",
                        f"self.{name} = create_layer(rngs)",
                    ]
                else:
                    lines.append(
                        f"self.{name} = nnx.List([{item.block.cls}(config{_bound(item.block)}, rngs=rngs) for _ in range({item.count})])"
                    )
            else:
                lines.append(f"self.{name} = {item.cls}(config{_bound(item)}, rngs=rngs)")
        call_config = ["        config = self.config"] if self._reads_config(block) else []
        out = [
            f"class {block.cls}(nnx.Module):",
            f'    """{block.doc}"""',
            "",
            f"    def __init__(self, config: {self.config_name}{_init_params(block)}, *, rngs: nnx.Rngs):",
            *_indented(lines, 8),
            "",
            f"    def __call__(self, {self._signature(block)}) -> {block.returns}:",
            *call_config,
            self.body(block, 8),
        ]
        return "\n".join(out) + "\n"

    def _eqx(self, block: Block) -> str:
        parts = self._parts(block)
        keyed = [n for n, item in parts if self._random(item)]
        fields, lines = [], []
        key_of = _keys(keyed, "key", lines)
        if any(isinstance(i, (Param, Dense, Norm, Cell, Conv, GroupNorm)) for _, i in parts):
            lines.append("dtype = jnp.dtype(config.dtype)")
        for name, item in parts:
            if isinstance(item, (Conv, GroupNorm)):
                fields.append(f"{name}: eqx.nn.{'Conv2d' if isinstance(item, Conv) else 'GroupNorm'}")
                lines.append(f"self.{name} = {self._vision_layer(item, f'key={key_of.get(name)}')}")
            elif isinstance(item, Param):
                fields.append(f"{name}: jax.Array")
                lines.append(f"self.{name} = {self.init_value(item, key_of.get(name, ''))}")
            elif isinstance(item, Dense):
                fields.append(f"{name}: eqx.nn.Linear")
                lines.append(
                    f"self.{name} = eqx.nn.Linear({item.d_in}, {item.d_out}, use_bias={item.bias}, "
                    f"dtype=dtype, key={key_of[name]})"
                )
            elif isinstance(item, Norm):
                cls = "RMSNorm" if item.kind == "rms" else "LayerNorm"
                fields.append(f"{name}: eqx.nn.{cls}")
                lines.append(f"self.{name} = eqx.nn.{cls}({item.dim}, eps=config.norm_eps, dtype=dtype)")
            elif isinstance(item, Cell):
                cls = "LSTMCell" if item.kind == "lstm" else "GRUCell"
                fields.append(f"{name}: eqx.nn.{cls}")
                lines.append(
                    f"self.{name} = eqx.nn.{cls}(config.d_model, config.d_model, dtype=dtype, key={key_of[name]})"
                )
            elif isinstance(item, Stack):
                fields.append(f"{name}: {item.block.cls}" if item.scan else f"{name}: tuple[{item.block.cls}, ...]")
                keys = f"jax.random.split({key_of[name]}, {item.count})"
                lines.append(
                    f"self.{name} = eqx.filter_vmap(lambda k: {item.block.cls}(config{_bound(item.block)}, k))({keys})"
                    if item.scan
                    else f"self.{name} = tuple({item.block.cls}(config{_bound(item.block)}, k) for k in {keys})"
                )
            else:
                fields.append(f"{name}: {item.cls}")
                lines.append(f"self.{name} = {item.cls}(config{_bound(item)}, {key_of[name]})")
        if self._reads_config(block):
            fields.append(f"config: {self.config_name} = eqx.field(static=True)")
            lines.append("self.config = config")
        call_config = ["        config = self.config"] if self._reads_config(block) else []
        out = [
            f"class {block.cls}(eqx.Module):",
            f'    """{block.doc}"""',
            "",
            *("    " + f for f in fields),
            "",
            f"    def __init__(self, config: {self.config_name}{_init_params(block)}, key: jax.Array):",
            *_indented(lines, 8),
            "",
            f"    def __call__(self, {self._signature(block)}) -> {block.returns}:",
            *call_config,
            self.body(block, 8),
        ]
        return "\n".join(out) + "\n"

    # --- vision leaves ------------------------------------------------------------------------

    def _vision_call(self, child: Conv | GroupNorm, args: str) -> str:
        if self.library:
            return f"self.{child.name}({args})"
        if isinstance(child, GroupNorm):
            w, b = self.param(child.name), self.param(child.name + "_bias")
            return f"group_norm({args}, {w}, {b}, config.num_groups, config.norm_eps)"
        stride = f", stride={child.stride}" if child.stride != "1" else ""
        out = f"conv2d({args}, {self.param(child.name)}{stride})"
        if not child.bias:
            return out
        bias = self.param(child.name + "_bias")
        return f"{out} + {bias}" + ("[:, None, None]" if self.style == "equinox" else "")

    def _vision_layer(self, item: Conv | GroupNorm, rng: str) -> str:
        """The library layer's constructor (``rng``: ``rngs=rngs`` or ``key=...``)."""
        nnx = self.style == "flax_nnx"
        if isinstance(item, GroupNorm):
            if nnx:
                return (
                    f"nnx.GroupNorm({item.dim}, num_groups=config.num_groups, epsilon=config.norm_eps, "
                    f"dtype=dtype, param_dtype=dtype, {rng})"
                )
            return f"eqx.nn.GroupNorm(config.num_groups, {item.dim}, eps=config.norm_eps, dtype=dtype)"
        if nnx:
            groups = f", feature_group_count={item.c_in}" if item.depthwise else ""
            return (
                f"nnx.Conv({item.c_in}, {item.c_out}, kernel_size=({item.kernel}, {item.kernel}), "
                f"strides=({item.stride}, {item.stride}){groups}, use_bias={item.bias}, param_dtype=dtype, {rng})"
            )
        groups = f", groups={item.c_in}" if item.depthwise else ""
        return (
            f'eqx.nn.Conv2d({item.c_in}, {item.c_out}, {item.kernel}, stride={item.stride}, padding="SAME"'
            f"{groups}, use_bias={item.bias}, dtype=dtype, {rng})"
        )


def _vision_params(c: Conv | GroupNorm) -> list[Param]:
    """A hand-written vision leaf's parameters: an HWIO kernel and bias, or a scale and bias."""
    if isinstance(c, GroupNorm):
        return [Param(c.name, (c.dim,), "ones"), Param(c.name + "_bias", (c.dim,), "zeros")]
    c_in = "1" if c.depthwise else c.c_in
    fan_in = f"{c.kernel} * {c.kernel}" + ("" if c.depthwise else f" * {_atom(c.c_in)}")
    out = [Param(c.name, (c.kernel, c.kernel, c_in, c.c_out), "normal", fan_in)]
    return out + ([Param(c.name + "_bias", (c.c_out,), "zeros")] if c.bias else [])


def _bound(block: Block) -> str:
    """The constructor arguments a parent passes ``block`` besides the config."""
    return "".join(f", {v}" for v in block.bind)


def _init_params(block: Block) -> str:
    return "".join(f", {a}: int" for a in block.init_args)


def reads_config(block: Block) -> bool:
    """Whether ``block``, or a block under it, reads ``config``: its body does, or it holds a norm."""
    return "config." in block.body or any(
        (isinstance(c, Block) and reads_config(c))
        or (isinstance(c, Stack) and reads_config(c.block))
        or isinstance(c, (Norm, GroupNorm))
        for c in block.children
    )


def _keys(names: list[str], key: str, lines: list[str]) -> dict[str, str]:
    if not names:
        return {}
    if len(names) == 1:
        return {names[0]: key}
    lines.append(f"keys = jax.random.split({key}, {len(names)})")
    return {n: f"keys[{i}]" for i, n in enumerate(names)}


def _vmapped(fn: str, rank: int) -> str:
    for _ in range(rank - 1):
        fn = f"jax.vmap({fn})"
    return fn


def _indented(lines: list[str], n: int) -> list[str]:
    return [(" " * n + line) if line else "" for line in lines]


def _atom(expr: str) -> str:
    """``expr`` parenthesized unless it is a name, attribute, call or subscript."""
    if re.fullmatch(r"[\w.]+", expr):
        return expr
    if re.match(r"[\w.]+[(\[]", expr) and _closes_at_end(expr):
        return expr
    if expr.startswith("(") and _split_call(expr, 0)[1] == len(expr):
        return expr
    return f"({expr})"


def _closes_at_end(expr: str) -> bool:
    """Whether the bracket opened after a leading name closes at the end of ``expr``."""
    end = len(re.match(r"[\w.]+", expr).group(0))
    while end < len(expr) and expr[end] in "([":
        try:
            _, end = _split_call(expr, end)
        except ValueError:
            return False
    return end == len(expr)


def _first_words(doc: str) -> str:
    """A docstring's first clause (up to a colon, a parenthesis or the end of its first sentence)."""
    return re.split(r":\s|\s\(|\.\s|\.$", doc)[0].rstrip()
