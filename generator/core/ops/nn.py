"""nn: idioms of real models: norms, attention, MLPs, conv/pooling, embeddings, losses, optimizers."""

from __future__ import annotations

import random

from ...errors import Reject
from ..types import FLOAT32, TensorType
from .base import Binding, Op, bind_same_type, longer_last_axis, same_as_second, scalar_of_first

CATEGORY = "nn"

FLOAT32_BF16 = ("float32", "bfloat16")


def _features(rng: random.Random) -> TensorType:
    d = rng.choice((8, 16, 32, 64))
    lead = rng.choice(((rng.choice((4, 8, 16)),), (rng.choice((2, 4)), rng.choice((4, 8, 16)))))
    return TensorType(lead + (d,), "float32")


def _bind_scale_bias(rng: random.Random, x: TensorType) -> Binding:
    v = x.with_shape((x.shape[-1],))
    return Binding(needs=(v, v), params={"eps": rng.choice(("1e-5", "1e-6"))})


def _bind_scale(rng: random.Random, x: TensorType) -> Binding:
    return Binding(needs=(x.with_shape((x.shape[-1],)),), params={"eps": rng.choice(("1e-5", "1e-6"))})


def _bind_dense(rng: random.Random, x: TensorType) -> Binding:
    h = rng.choice((8, 16, 32, 64))
    return Binding(
        needs=(x.with_shape((x.shape[-1], h)), x.with_shape((h,))),
        params={"act": rng.choice(("jax.nn.relu", "jax.nn.gelu", "jax.nn.silu", "jnp.tanh"))},
    )


def _infer_dense(types, params):
    return types[0].with_shape(types[0].shape[:-1] + types[1].shape[-1:])


def _bind_mlp(rng: random.Random, x: TensorType) -> Binding:
    d = x.shape[-1]
    h = rng.choice((2, 4)) * d
    return Binding(
        needs=(x.with_shape((d, h)), x.with_shape((h,)), x.with_shape((h, d))),
        params={"act": rng.choice(("jax.nn.gelu", "jax.nn.relu", "jax.nn.silu"))},
    )


def _bind_attention(rng: random.Random, x: TensorType) -> Binding:
    d = x.shape[-1]
    w = x.with_shape((d, d))
    return Binding(needs=(w, w, w), params={"scale": f"{d**0.5:.4f}", "t": x.shape[-2]})


def _bind_mha(rng: random.Random, x: TensorType) -> Binding:
    b = _bind_attention(rng, x)
    d = x.shape[-1]
    options = [h for h in (2, 4, 8) if d % h == 0]
    if not options:
        raise Reject(f"{d} features do not split into heads")
    heads = rng.choice(options)
    return Binding(
        needs=b.needs,
        params={
            **b.params,
            "h": heads,
            "dh": d // heads,
            "dh_scale": f"{(d // heads) ** 0.5:.4f}",
            "lead": ", ".join(map(str, x.shape[:-1])),
        },
    )


def _seq3(t: TensorType) -> bool:
    return t.rank == 3


def _image(rng: random.Random) -> TensorType:
    return TensorType(
        (rng.choice((1, 2, 4)), rng.choice((8, 16)), rng.choice((8, 16)), rng.choice((1, 3, 4, 8))), "float32"
    )


def _bind_conv(rng: random.Random, x: TensorType) -> Binding:
    k = rng.choice((1, 3, 5))
    out = rng.choice((4, 8, 16))
    stride = rng.choice((1, 1, 2))
    pad = rng.choice(("SAME", "VALID"))
    return Binding(needs=(x.with_shape((k, k, x.shape[-1], out)),), params={"stride": stride, "pad": pad, "k": k})


def _infer_conv(types, params):
    n, h, w, _ = types[0].shape
    k, s = params["k"], params["stride"]
    size = (lambda d: -(-d // s)) if params["pad"] == "SAME" else (lambda d: (d - k) // s + 1)
    return types[0].with_shape((n, size(h), size(w), types[1].shape[-1]))


def _infer_pool(types, params):
    n, h, w, c = types[0].shape
    return types[0].with_shape((n, h // 2, w // 2, c))


def _bind_embed(rng: random.Random, table: TensorType) -> Binding:
    ids = TensorType(tuple(rng.choice((2, 4, 8, 16)) for _ in range(rng.choice((1, 2)))), "int32")
    return Binding(needs=(ids,), params={"v": table.shape[0]})


def _infer_embed(types, params):
    return types[0].with_shape(types[1].shape + types[0].shape[1:])


def _embed_table(rng: random.Random) -> TensorType:
    return TensorType((rng.choice((16, 100, 1000)), rng.choice((8, 16, 32))), "float32")


def _bind_xent(rng: random.Random, logits: TensorType) -> Binding:
    return Binding(needs=(TensorType(logits.shape[:-1], "int32"),), params={"k": logits.shape[-1]})


def _bind_adam(rng: random.Random, p: TensorType) -> Binding:
    return Binding(needs=(p, p, p), params={"lr": rng.choice(("1e-3", "3e-4")), "step": rng.choice((1, 10, 100))})


def _bind_sgd(rng: random.Random, p: TensorType) -> Binding:
    return Binding(needs=(p, p), params={"lr": rng.choice(("0.1", "0.01")), "mu": rng.choice(("0.9", "0.99"))})


def _bind_train_step(rng: random.Random, x: TensorType) -> Binding:
    h = rng.choice((4, 8, 16))
    return Binding(
        needs=(x.with_shape((x.shape[-1], h)), x.with_shape(x.shape[:-1] + (h,))),
        params={"lr": rng.choice(("0.1", "0.05"))},
    )


def _nn(name, template, dtypes=FLOAT32, **kw):
    return Op(name, template, (CATEGORY,), dtypes, **kw)


OPS: tuple[Op, ...] = (
    _nn(
        "layer_norm_affine",
        "mu_{r} = jnp.mean({0}, axis=-1, keepdims=True)\nvar_{r} = jnp.var({0}, axis=-1, keepdims=True)\n"
        "({0} - mu_{r}) * lax.rsqrt(var_{r} + {eps}) * {1} + {2}",
        FLOAT32_BF16,
        bind=_bind_scale_bias,
        min_rank=1,
        requires=longer_last_axis,
        new_input=_features,
        hint="normed",
        weight=2.0,
        upcast=True,
    ),
    _nn(
        "rms_norm_scale",
        "{0} * lax.rsqrt(jnp.mean(jnp.square({0}), axis=-1, keepdims=True) + {eps}) * {1}",
        FLOAT32_BF16,
        bind=_bind_scale,
        min_rank=1,
        requires=longer_last_axis,
        new_input=_features,
        hint="normed",
        weight=1.5,
        upcast=True,
    ),
    _nn(
        "dense",
        "{act}({0} @ {1} + {2})",
        FLOAT32_BF16,
        infer=_infer_dense,
        bind=_bind_dense,
        min_rank=1,
        max_rank=3,
        new_input=_features,
        hint="hidden",
        weight=2.0,
    ),
    _nn(
        "mlp_block",
        "h_{r} = {act}({0} @ {1} + {2})\n{0} + h_{r} @ {3}",
        FLOAT32_BF16,
        bind=_bind_mlp,
        min_rank=2,
        max_rank=3,
        new_input=_features,
        hint="block",
        weight=1.5,
    ),
    _nn(
        "attention",
        "q_{r}, k_{r}, v_{r} = {0} @ {1}, {0} @ {2}, {0} @ {3}\n"
        "scores_{r} = q_{r} @ jnp.swapaxes(k_{r}, -1, -2) / {scale}\n"
        "jax.nn.softmax(scores_{r}, axis=-1) @ v_{r}",
        bind=_bind_attention,
        min_rank=2,
        max_rank=3,
        new_input=_features,
        hint="attn",
        weight=2.0,
    ),
    _nn(
        "causal_attention",
        "scores_{r} = ({0} @ {1}) @ jnp.swapaxes({0} @ {2}, -1, -2) / {scale}\n"
        "mask_{r} = jnp.tril(jnp.ones(({t}, {t}), dtype=bool))\n"
        "weights_{r} = jax.nn.softmax(jnp.where(mask_{r}, scores_{r}, -1e9), axis=-1)\n"
        "weights_{r} @ ({0} @ {3})",
        bind=_bind_attention,
        min_rank=2,
        max_rank=3,
        new_input=_features,
        hint="attn",
        weight=1.5,
    ),
    _nn(
        "multi_head_attention",
        "def heads_{r}(t):\n    return t.reshape({lead}, {h}, {dh}).swapaxes(-2, -3)\n"
        "q_{r}, k_{r}, v_{r} = heads_{r}({0} @ {1}), heads_{r}({0} @ {2}), heads_{r}({0} @ {3})\n"
        'probs_{r} = jax.nn.softmax(jnp.einsum("...qd,...kd->...qk", q_{r}, k_{r}) / {dh_scale}, axis=-1)\n'
        'jnp.einsum("...qk,...kd->...qd", probs_{r}, v_{r}).swapaxes(-2, -3).reshape({0}.shape)',
        bind=_bind_mha,
        min_rank=2,
        max_rank=3,
        new_input=_features,
        hint="attn",
        weight=1.5,
    ),
    _nn(
        "conv2d",
        'lax.conv_general_dilated({0}, {1}, window_strides=({stride}, {stride}), padding="{pad}", dimension_numbers=("NHWC", "HWIO", "NHWC"))',
        infer=_infer_conv,
        bind=_bind_conv,
        min_rank=4,
        max_rank=4,
        new_input=_image,
        hint="conv",
        weight=2.0,
    ),
    _nn(
        "max_pool",
        'lax.reduce_window({0}, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")',
        infer=_infer_pool,
        min_rank=4,
        max_rank=4,
        new_input=_image,
        hint="pooled",
        weight=1.5,
    ),
    _nn(
        "avg_pool",
        'lax.reduce_window({0}, 0.0, lax.add, (1, 2, 2, 1), (1, 2, 2, 1), "VALID") / 4.0',
        infer=_infer_pool,
        min_rank=4,
        max_rank=4,
        new_input=_image,
        hint="pooled",
    ),
    _nn(
        "global_avg_pool",
        "jnp.mean({0}, axis=(1, 2))",
        infer=lambda ts, p: ts[0].with_shape((ts[0].shape[0], ts[0].shape[3])),
        min_rank=4,
        max_rank=4,
        new_input=_image,
        hint="pooled",
    ),
    _nn(
        "embedding",
        "{0}[{1} % {v}]",
        infer=_infer_embed,
        bind=_bind_embed,
        min_rank=2,
        max_rank=2,
        new_input=_embed_table,
        hint="emb",
        weight=1.5,
    ),
    _nn(
        "softmax_cross_entropy",
        "-jnp.mean(jnp.sum(jax.nn.one_hot({1} % {k}, {k}) * jax.nn.log_softmax({0}, axis=-1), axis=-1))",
        infer=scalar_of_first,
        bind=_bind_xent,
        min_rank=2,
        requires=longer_last_axis,
        max_rank=2,
        hint="loss",
        weight=1.5,
    ),
    _nn(
        "mse_loss",
        "jnp.mean(jnp.square({0} - {1}))",
        infer=scalar_of_first,
        bind=bind_same_type,
        min_rank=1,
        hint="loss",
    ),
    _nn(
        "huber_loss",
        "d_{r} = jnp.abs({0} - {1})\njnp.mean(jnp.where(d_{r} < 1.0, 0.5 * d_{r} ** 2, d_{r} - 0.5))",
        infer=scalar_of_first,
        bind=bind_same_type,
        min_rank=1,
        hint="loss",
    ),
    _nn(
        "sigmoid_bce",
        "jnp.mean(jnp.maximum({0}, 0) - {0} * jax.nn.sigmoid({1}) + jnp.log1p(jnp.exp(-jnp.abs({0}))))",
        infer=scalar_of_first,
        bind=bind_same_type,
        min_rank=1,
        hint="loss",
    ),
    _nn(
        "sgd_momentum",
        "velocity_{r} = {mu} * {2} + {1}\n{0} - {lr} * velocity_{r}",
        bind=_bind_sgd,
        hint="params",
        weight=1.5,
    ),
    _nn(
        "adam_update",
        "m_{r} = 0.9 * {2} + 0.1 * {1}\nv_{r} = 0.999 * {3} + 0.001 * jnp.square({1})\n"
        "m_hat_{r} = m_{r} / (1.0 - 0.9 ** {step})\nv_hat_{r} = v_{r} / (1.0 - 0.999 ** {step})\n"
        "{0} - {lr} * m_hat_{r} / (jnp.sqrt(v_hat_{r}) + 1e-8)",
        bind=_bind_adam,
        guards=(None, None, None, "nonnegative"),  # Adam's second moment is never negative
        hint="params",
        weight=1.5,
    ),
    _nn(
        "train_step",
        "def loss_{r}(w):\n    return jnp.mean((jnp.tanh({0} @ w) - {2}) ** 2)\n{1} - {lr} * jax.grad(loss_{r})({1})",
        infer=same_as_second,
        bind=_bind_train_step,
        min_rank=2,
        max_rank=2,
        new_input=_features,
        hint="w_new",
        transforms=("grad",),
        weight=1.5,
    ),
    _nn(
        "dot_product_attention",
        "jax.nn.dot_product_attention({0}, {0}, {0}, is_causal=True)",
        requires=lambda t: t.rank == 4,
        min_rank=4,
        max_rank=4,
        new_input=lambda r: TensorType(
            (r.choice((1, 2)), r.choice((4, 8)), r.choice((1, 2, 4)), r.choice((8, 16))), "float32"
        ),
        hint="attn",
    ),
)
