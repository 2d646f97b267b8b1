"""A spec, rendered: one self-contained module (imports, a config dataclass, the helpers and
blocks it uses, the jitted function and ``example_args()``). No randomness."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..base import ModelProgram, config_class
from .blocks import helpers, layer_args, layer_block, mask_lines, mlp_block, model_block, moe_helpers
from .emit import Block, Emitter, Idioms, Norm, Param, Stack
from .moe import moe_block
from .spec import ModelSpec

HOST_DEVICES = 8
# sharding layout -> (mesh axis names, logical axis -> mesh axis)
LAYOUTS: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "data": (("data",), {"batch": "data"}),
    "fsdp": (("fsdp",), {"batch": "fsdp", "embed": "fsdp"}),
    "tensor": (("data", "model"), {"batch": "data", "heads": "model", "kv": "model", "mlp": "model", "vocab": "model"}),
    "fsdp_tensor": (
        ("fsdp", "model"),
        {"batch": "fsdp", "embed": "fsdp", "heads": "model", "kv": "model", "mlp": "model", "vocab": "model"},
    ),
}
STYLE_NAMES = {"jax": "plain JAX", "flax_nnx": "Flax NNX", "equinox": "Equinox"}
LAYOUT_NAMES = {
    "data": "data parallel",
    "fsdp": "fully sharded data parallel (FSDP)",
    "tensor": "tensor parallel (Megatron-style) with data parallelism",
    "fsdp_tensor": "FSDP with tensor parallelism",
}


def _tuple(names: tuple[str, ...]) -> str:
    return "(" + ", ".join(f'"{n}"' for n in names) + ("," if len(names) == 1 else "") + ")"


def all_blocks(block: Block) -> list[Block]:
    """``block`` and the blocks under it, children first, each class once."""
    out: list[Block] = []
    for child in block.children:
        inner = child.block if isinstance(child, Stack) else child
        if isinstance(inner, Block):
            out += all_blocks(inner)
    out.append(block)
    seen: dict[str, Block] = {}
    for b in out:
        seen.setdefault(b.cls, b)
    return list(seen.values())


def _config(spec: ModelSpec) -> str:
    arch, s = spec.arch, spec.sizes
    lm, sharded, moe = arch.task in ("lm", "classifier"), arch.sharding != "none", arch.layer.moe
    attention = arch.attends
    recurrent = arch.layer.recurrent
    fields: list[tuple[str, str, object]] = []
    if lm:
        fields.append(("vocab_size", "int", s.vocab_size))
    if arch.task == "classifier":
        fields.append(("num_classes", "int", s.num_classes))
    fields.append(("d_model", "int", s.d_model))
    if lm:
        if arch.hybrid:
            fields.append(("num_layer_groups", "int", s.num_layers // len(arch.pattern)))
        else:
            fields.append(("num_layers", "int", s.num_layers))
    if attention:
        fields += [
            ("num_heads", "int", s.num_heads),
            ("num_kv_heads", "int", s.num_kv_heads),
            ("head_dim", "int", s.head_dim),
        ]
    if moe is not None:
        fields += [
            ("num_experts", "int", s.num_experts),
            ("experts_per_token", "int", s.experts_per_token),
            ("expert_d_ff", "int", s.expert_d_ff),
        ]
    if recurrent is not None and recurrent.kind in ("rglru", "mamba", "s4d"):
        fields.append(("hidden_size", "int", s.hidden_size))
        if recurrent.kind in ("mamba", "s4d"):
            fields.append(("state_size", "int", s.state_size))
        if recurrent.conv:
            fields.append(("conv_width", "int", s.conv_width))
        if recurrent.low_rank_dt:
            fields.append(("dt_rank", "int", s.dt_rank))
    if s.d_ff:
        fields.append(("d_ff", "int", s.d_ff))
    if arch.local:
        fields.append(("window_size", "int", s.window_size))
    fields.append(("global_batch_size" if sharded else "batch_size", "int", s.batch_size))
    fields.append(("seq_len", "int", s.seq_len))
    if arch.learned_positions:
        fields.append(("max_seq_len", "int", max(s.seq_len, 2048)))
    if attention and arch.layer.attention.rope != "none":
        fields.append(("rope_theta", "float", s.rope_theta))
    if s.norm_eps:
        fields.append(("norm_eps", "float", s.norm_eps))
    if attention and arch.layer.attention.softcap:
        fields.append(("attn_logit_softcap", "float", s.attn_softcap))
    if arch.final_softcap:
        fields.append(("final_logit_softcap", "float", s.final_softcap))
    if moe is not None and moe.dispatch in ("capacity", "sorted"):
        fields.append(("capacity_factor", "float", s.capacity_factor))
    if moe is not None and moe.aux_output == "weighted":
        fields.append(("aux_loss_coef", "float", s.aux_loss_coef))
        if moe.z_loss:
            fields.append(("router_z_loss_coef", "float", s.z_loss_coef))
    fields.append(("dtype", "str", spec.dtype))
    what = {
        "lm": "a decoder-only language model",
        "classifier": "a transformer encoder classifier",
        "block": "one transformer layer",
        "moe_layer": "a mixture-of-experts layer and the batch it runs on",
    }[arch.task]
    if moe is not None and arch.task in ("lm", "block"):
        what += " with mixture-of-experts MLPs"
    if recurrent is not None:
        what = what.replace("transformer", "recurrent").replace("decoder-only ", "")
    return config_class(spec.config_name, fields, f"Sizes and constants of {what}.")


def _param_specs(emitter: Emitter, blocks: list[Block]) -> str:
    specs: dict[str, str] = {}
    for block in blocks:
        for name, item in emitter._parts(block):
            if isinstance(item, Param):
                specs.setdefault(name, emitter.spec(item.axes))
    entries = "".join(f'    "{n}": {s},\n' for n, s in specs.items())
    key = "key" if emitter.style == "jax" else "name"
    return (
        "# Each parameter's layout on the mesh, by name (a stacked layer axis stays whole).\n"
        f"PARAM_SPECS = {{\n{entries}}}\n\n\n"
        "def param_sharding(path, x) -> NamedSharding:\n"
        '    """The NamedSharding of the parameter at ``path`` (from ``PARAM_SPECS``)."""\n'
        f"    spec = PARAM_SPECS[path[-1].{key}]\n"
        "    return NamedSharding(MESH, P(*([None] * (x.ndim - len(spec))), *spec))\n"
    )


def _data_shape(spec: ModelSpec) -> tuple[str, str]:
    batch = "config.global_batch_size" if spec.arch.sharding != "none" else "config.batch_size"
    if spec.arch.task in ("block", "moe_layer"):
        return f"({batch}, config.seq_len, config.d_model)", "jnp.dtype(config.dtype)"
    return f"({batch}, config.seq_len)", "jnp.int32"


def _outputs(spec: ModelSpec) -> list[str]:
    """The names of what the jitted function returns."""
    arch = spec.arch
    first = {"lm": "logits", "classifier": "logits", "block": "out", "moe_layer": "out"}[arch.task]
    return [first, *(["hidden"] if arch.return_hidden else []), *(["aux"] if arch.layer.moe is not None else [])]


def _entry(spec: ModelSpec, top: Block) -> tuple[str, str]:
    """The jitted function and ``example_args()``, in the spec's style."""
    arch, style, fn, cfg = spec.arch, spec.style, spec.function_name, spec.config_name
    sharded = arch.sharding != "none"
    rules = LAYOUTS[arch.sharding][1] if sharded else {}
    shape, dtype = _data_shape(spec)
    whole_model = arch.task in ("lm", "classifier")
    data = "tokens" if whole_model else "x"
    batch = f'"{rules["batch"]}"' if rules else "None"
    data_sharding = f", sharding=NamedSharding(MESH, P({batch}, None{', None' * (not whole_model)}))" if sharded else ""
    out_spec = {
        "lm": f"P({batch}, None, {chr(34) + rules['vocab'] + chr(34) if rules.get('vocab') else 'None'})",
        "classifier": f"P({batch}, None, None)" if arch.pooling == "none" else f"P({batch}, None)",
        "block": f"P({batch}, None, None)",
        "moe_layer": f"P({batch}, None, None)",
    }[arch.task]
    outputs = _outputs(spec)
    returns = top.returns
    doc = {
        "lm": "Next-token logits (batch, seq, vocab)" + (" and the final hidden states" if arch.return_hidden else ""),
        "classifier": "Class logits per token (batch, seq, num_classes)"
        if arch.pooling == "none"
        else "Class logits (batch, num_classes)",
        "block": "The layer applied to hidden states (batch, seq, d_model)",
        "moe_layer": "The mixture-of-experts layer applied to hidden states (batch, seq, d_model)",
    }[arch.task]
    if "aux" in outputs:
        doc += ", with the router's auxiliary losses"
    needs_config = arch.task == "block" and bool(layer_args(arch))  # sin, cos and masks are built here
    lines: list[str] = []
    call_args = data
    if arch.task == "block":
        if layer_args(arch):
            lines.append("seq_len = x.shape[-2]")
        if arch.attends and arch.layer.attention.rope != "none":
            lines.append("sin, cos = rope_frequencies(seq_len, config.head_dim, config.rope_theta)")
        lines += mask_lines(arch)
        call_args = ", ".join(["h" if style == "equinox" else "x", *layer_args(arch)])
    merged = "model" if whole_model else "layer"
    if style == "jax":
        init = "init_params" if arch.task != "block" else f"init_{top.fn}"
        if arch.task == "block":
            lines.append(f"return {top.fn}(params, {call_args}, config)")
        signature = f"def {fn}(params: dict, {data}: jax.Array, config: {cfg}) -> {returns}:"
        abstract = [f"params = jax.eval_shape(lambda key: {init}(key, config), jax.random.key(0))"]
        treat, returned = "params", f"params, {data}, config"
    elif style == "flax_nnx":
        lines.insert(0, f"{merged} = nnx.merge(graphdef, state)")
        lines.append(f"return {merged}({call_args})")
        config_arg = f", config: {cfg}" if needs_config else ""
        signature = f"def {fn}(graphdef: nnx.GraphDef, state: nnx.State, {data}: jax.Array{config_arg}) -> {returns}:"
        create = f"lambda: {top.cls}(config, rngs=nnx.Rngs(0))"
        abstract = (
            [f"graphdef, state = nnx.get_abstract_model({create}, MESH)"]
            if sharded
            else [f"graphdef, state = nnx.split(nnx.eval_shape({create}))"]
        )
        treat, returned = "", f"graphdef, state, {data}" + (", config" if needs_config else "")
    else:
        lines.insert(0, f"{merged} = eqx.combine(params, static)")
        call = f"jax.vmap(lambda h: layer({call_args}))(x)" if arch.task == "block" else f"jax.vmap({merged})({data})"
        lines.append(f"{', '.join(outputs)} = {call}")
        if "aux" in outputs:  # one value per example: averaged over the batch, as the batched code does
            lines.append("aux = jax.tree.map(jnp.mean, aux)")
        if sharded:
            lines.append(f"{outputs[0]} = constrain({outputs[0]}, {out_spec})")
        lines.append(f"return {', '.join(outputs)}")
        config_arg = f", config: {cfg}" if needs_config else ""
        signature = f"def {fn}(params: {top.cls}, static: {top.cls}, {data}: jax.Array{config_arg}) -> {returns}:"
        abstract = [
            f"model = eqx.filter_eval_shape({top.cls}, config, jax.random.key(0))",
            "params, static = eqx.partition(model, lambda leaf: isinstance(leaf, jax.ShapeDtypeStruct))",
        ]
        treat, returned = "params", f"params, static, {data}" + (", config" if needs_config else "")
    if treat and sharded:
        abstract.append(
            f"{treat} = jax.tree_util.tree_map_with_path(\n"
            f"    lambda path, x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=param_sharding(path, x)), {treat}\n)"
        )
    body = "\n".join("    " + line for line in "\n".join(lines).splitlines())
    entry_is_top = style == "jax" and arch.task != "block"
    function = "" if entry_is_top else f'{signature}\n    """{doc}."""\n{body}\n'
    example = "\n".join(
        [
            "def example_args():",
            f"    config = {cfg}()",
            *("    " + line for line in "\n".join(abstract).splitlines()),
            f"    {data} = jax.ShapeDtypeStruct({shape}, {dtype}{data_sharding})",
            f"    return {returned}",
        ]
    )
    return function, example + "\n"


def module_imports(body: str, style: str) -> str:
    """The import lines a model program's ``body`` needs, written in ``style``."""
    lines = ["import dataclasses"]
    if "functools." in body:
        lines.append("import functools")
    if "math." in body:
        lines.append("import math")
    lines.append("")
    if style == "equinox":
        lines.append("import equinox as eqx")
    lines += ["import jax", "import jax.numpy as jnp"]
    if style == "flax_nnx":
        lines.append("from flax import nnx")
    if re.search(r"(?<![\w.])lax\.", body):
        lines.append("from jax import lax")
    if "NamedSharding" in body:
        lines.append("from jax.sharding import AxisType, NamedSharding, PartitionSpec as P")
    return "\n".join(lines) + "\n"


def _moe_doc(spec: ModelSpec) -> str:
    moe = spec.arch.layer.moe
    what = {
        "dense": "dense",
        "capacity": "capacity-based",
        "sorted": "sort-and-scatter",
        "ragged": "dropless ragged-dot",
    }
    parts = [
        f"{what[moe.dispatch]} dispatch",
        "softmax then top-k" if moe.router == "softmax_topk" else "top-k then softmax",
    ]
    parts.append(("SwiGLU" if moe.gated else "GELU") + " experts")
    if moe.shared_expert:
        parts.append("a gated shared expert" if moe.shared_gate else "a shared expert")
    parts.append("load-balancing and z losses" if moe.z_loss else "a load-balancing loss")
    return ", ".join(parts)


def _recurrent_doc(spec: ModelSpec) -> str:
    arch, r = spec.arch, spec.arch.layer.recurrent
    cell = {
        "lstm": "LSTM",
        "gru": "GRU",
        "rglru": "RG-LRU (Griffin)",
        "mamba": "Mamba-style selective state-space",
        "s4d": "S4D state-space",
    }[r.kind]
    what = {"lm": "language model", "classifier": "sequence classifier", "block": "layer"}[arch.task]
    extra = []
    if r.scan:
        extra.append("an associative scan" if r.scan == "associative" else "a sequential scan")
    if r.conv:
        extra.append("a causal convolution")
    if arch.layer.placement == "plain":
        extra.append("layers stacked without residuals")
    if arch.hybrid:
        extra.append("attention layers in a " + "/".join(arch.pattern) + " pattern")
    article = "An" if cell[0] in "AEIOU" else "A"
    return f"{article} {cell} {what}" + (f" ({', '.join(extra)})" if extra else "")


def module_doc(spec: ModelSpec) -> str:
    """The module docstring of ``spec``'s program: what the model is, in one sentence."""
    arch = spec.arch
    layer, attention = arch.layer, arch.layer.attention
    layout = f", {LAYOUT_NAMES[arch.sharding]} on a mesh of {HOST_DEVICES} devices" if arch.sharding != "none" else ""
    if arch.task == "moe_layer":
        return f'"""A mixture-of-experts layer in {STYLE_NAMES[spec.style]}{layout}: {_moe_doc(spec)}."""\n'
    if layer.recurrent is not None and not arch.attends:
        return f'"""{_recurrent_doc(spec)} in {STYLE_NAMES[spec.style]}{layout}."""\n'
    parts = []
    if layer.recurrent is not None:
        recurrent = _recurrent_doc(spec)
        parts.append(recurrent[0].lower() + recurrent[1:])
    if layer.norm:
        placed = "parallel attention and MLP" if layer.placement == "parallel" else f"{layer.placement}-norm"
        parts.append({"rms": "RMSNorm", "layer": "LayerNorm"}[layer.norm] + f" ({placed})")
    parts.append(
        {
            "grouped": "grouped-query attention",
            "repeat": "attention over repeated KV heads",
            "dpa": "jax.nn.dot_product_attention",
        }[attention.impl]
    )
    if layer.moe is not None:
        parts.append(f"mixture-of-experts MLPs ({_moe_doc(spec)})")
    elif layer.mlp.activation:
        parts.append(
            {"swiglu": "SwiGLU", "geglu": "GeGLU", "gelu": "GELU", "relu2": "squared-ReLU"}[layer.mlp.activation]
            + " MLP"
        )
    if attention.rope != "none":
        parts.append("RoPE")
    if arch.learned_positions:
        parts.append("learned positions")
    if arch.hybrid and layer.recurrent is None:
        parts.append("local and global attention layers " + "/".join(arch.pattern))
    elif arch.local:
        parts.append("sliding-window attention")
    if attention.qk_norm:
        parts.append("QK-norm")
    if attention.softcap or arch.final_softcap:
        parts.append("logit soft-capping")
    what = {
        "lm": "A decoder-only language model",
        "classifier": "A transformer encoder classifier",
        "block": "One transformer layer",
    }[arch.task]
    if layer.recurrent is not None:
        what = {
            "lm": "A hybrid recurrent language model",
            "classifier": "A hybrid recurrent classifier",
            "block": "One layer",
        }[arch.task]
    return f'"""{what} in {STYLE_NAMES[spec.style]}{layout}: {", ".join(parts)}."""\n'


@dataclass(frozen=True)
class ModelCode:
    """A model's code, before what a program does with it (its entry point and ``example_args``):
    what ``render``, the vision renderer and the training step share."""

    doc: str  # the module docstring
    config: str  # the config dataclass
    layout: tuple[str, ...]  # a sharded model's mesh and its parameters' layouts (none on one device)
    code: tuple[str, ...]  # the helpers, then the blocks, the model's own last
    top: Block


def model_code(spec: ModelSpec) -> ModelCode:
    """The code of ``spec``'s model (in plain JAX the model is a pair of functions,
    ``init_params`` and ``spec.function_name``)."""
    arch = spec.arch
    sharded = arch.sharding != "none"
    axes, rules = LAYOUTS[arch.sharding] if sharded else ((), {})
    emitter = Emitter(
        spec.style, Idioms(spec.library_layers, spec.einsum, rules if sharded else None), spec.config_name
    )
    if arch.task == "block":
        top = layer_block(arch, arch.pattern[0])
    elif arch.task == "moe_layer":
        moe = arch.layer.moe
        top = moe_block(moe, mlp_block(arch.layer.mlp) if moe.shared_expert else None)
    else:
        top = model_block(arch, spec.model_name)
    blocks = all_blocks(top)
    hand_written_norms = not emitter.library and any(isinstance(c, Norm) for b in blocks for c in b.children)
    layout = []
    if sharded:
        shape = ", ".join(str(n) for n in spec.sizes.mesh_shape)
        types = ", ".join(["AxisType.Auto"] * len(axes))
        layout.append(
            f"MESH = jax.make_mesh(({shape}{',' if len(axes) == 1 else ''}), {_tuple(axes)}, axis_types=({types}{',' if len(axes) == 1 else ''}))\n"
        )
        if spec.style != "flax_nnx":
            layout.append(_param_specs(emitter, blocks))
    code = helpers(spec, hand_written_norms) + moe_helpers(spec)
    for block in blocks:
        if block is top and spec.style == "jax" and arch.task != "block":  # the model is the function
            text = emitter.emit(block).replace(f"def init_{block.fn}(", "def init_params(", 1)
            text = text.replace(f"def {block.fn}(", f"def {spec.function_name}(", 1)
            code.append(text)
        else:
            code.append(emitter.emit(block))
    return ModelCode(module_doc(spec), _config(spec), tuple(layout), tuple(code), top)


def render(spec: ModelSpec) -> ModelProgram:
    arch = spec.arch
    sharded = arch.sharding != "none"
    axes = LAYOUTS[arch.sharding][0] if sharded else ()
    model = model_code(spec)
    parts = [*model.layout, *model.code]
    function, example = _entry(spec, model.top)
    if function:
        parts.append(function)
    parts.append(example)
    body = "\n\n".join(p.rstrip("\n") + "\n" for p in [model.config, *parts])
    source = model.doc + "\n" + module_imports(body, spec.style) + "\n\n" + body
    transforms = []
    if "lax.scan" in source:
        transforms.append("scan")
    if "jax.checkpoint" in source:
        transforms.append("checkpoint")
    if "jax.vmap" in source or "eqx.filter_vmap" in source or "nnx.vmap" in source:
        transforms.append("vmap")
    return ModelProgram(
        category=spec.category,
        style=spec.style,
        function_name=spec.function_name,
        source=source,
        transforms=tuple(transforms),
        host_devices=HOST_DEVICES if sharded else 1,
        mesh=",".join(f"{a}={n}" for a, n in zip(axes, spec.sizes.mesh_shape)) if sharded else None,
    )
