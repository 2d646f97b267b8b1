"""``extract_ir`` takes arguments the way real JAX code passes them: pytrees of arrays are traced,
hashable values without arrays are static, and the IR equals ``jax.jit(fn, static_argnums=...)``."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import pytest

from generator import extract_ir, extract_with_grad

F32 = jnp.float32


@dataclasses.dataclass(frozen=True)
class MLPConfig:
    d_model: int = 128
    d_ff: int = 512
    eps: float = 1e-6


def init_params(config: MLPConfig):
    spec = lambda *shape: jax.ShapeDtypeStruct(shape, F32)  # noqa: E731
    return {
        "norm": {"scale": spec(config.d_model)},
        "mlp": {"w_in": spec(config.d_model, config.d_ff), "w_out": spec(config.d_ff, config.d_model)},
    }


def mlp_block(params, x, config: MLPConfig):
    """Pre-norm residual MLP over a parameter pytree; ``config`` is a hashable dataclass."""
    var = jnp.mean(jnp.square(x), axis=-1, keepdims=True)
    h = x * jax.lax.rsqrt(var + config.eps) * params["norm"]["scale"]
    h = jax.nn.gelu(h @ params["mlp"]["w_in"]) @ params["mlp"]["w_out"]
    return x + h


def test_a_parameter_dict_is_traced_and_a_config_dataclass_is_static():
    config = MLPConfig()
    params, x = init_params(config), jax.ShapeDtypeStruct((4, 16, config.d_model), F32)
    pair = extract_ir(mlp_block, params, x, config)
    assert pair.stablehlo_ir == jax.jit(mlp_block, static_argnums=(2,)).lower(params, x, config).as_text()
    # the signature lists the traced leaves in pytree order (dict keys sorted)
    assert pair.input_signature == (
        ((128, 512), "float32"),  # mlp.w_in
        ((512, 128), "float32"),  # mlp.w_out
        ((128,), "float32"),  # norm.scale
        ((4, 16, 128), "float32"),  # x
    )
    assert "stablehlo.dot_general" in pair.stablehlo_ir


def test_grad_over_a_parameter_pytree():
    config = MLPConfig(d_model=8, d_ff=16)
    params, x = init_params(config), jax.ShapeDtypeStruct((2, 8), F32)
    fwd, bwd = extract_with_grad(mlp_block, params, x, config)
    assert fwd.input_signature == bwd.input_signature
    # one gradient per parameter leaf and one for x
    assert len(bwd.output_signature) == 4 and ((16, 8), "float32") in bwd.output_signature


def test_an_empty_pytree_and_a_shape_tuple():
    def zeros_like_state(state, shape):
        return jnp.zeros(shape) + len(state)

    pair = extract_ir(zeros_like_state, (), (2, 3))
    assert pair.input_signature == () and pair.output_signature == (((2, 3), "float32"),)


def test_an_argument_neither_traceable_nor_hashable_is_named():
    with pytest.raises(ValueError, match=r"argument 1 \(list\) is neither traceable nor hashable"):
        extract_ir(lambda x, names: x, jnp.ones(2), ["a", "b"])


def test_optax_state_is_traced():
    optax = pytest.importorskip("optax")
    params = {"w": jax.ShapeDtypeStruct((64, 64), F32), "b": jax.ShapeDtypeStruct((64,), F32)}
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(optax.cosine_decay_schedule(3e-4, 1000)))
    opt_state = jax.eval_shape(optimizer.init, params)

    def train_step(params, opt_state, x, y):
        def loss_fn(params):
            return jnp.mean(jnp.square(x @ params["w"] + params["b"] - y))

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    batch = jax.ShapeDtypeStruct((32, 64), F32)
    pair = extract_ir(train_step, params, opt_state, batch, batch)
    assert pair.stablehlo_ir == jax.jit(train_step).lower(params, opt_state, batch, batch).as_text()
    assert len(pair.input_signature) == len(jax.tree_util.tree_leaves((params, opt_state))) + 2


def test_flax_nnx_state_is_traced_and_graphdef_static():
    nnx = pytest.importorskip("flax.nnx")

    class Block(nnx.Module):
        def __init__(self, d: int, rngs: nnx.Rngs):
            self.norm = nnx.RMSNorm(d, rngs=rngs)
            self.proj = nnx.Linear(d, d, rngs=rngs)

        def __call__(self, x):
            return x + self.proj(self.norm(x))

    graphdef, state = nnx.split(nnx.eval_shape(lambda: Block(128, nnx.Rngs(0))))

    def forward(graphdef, state, x):
        model = nnx.merge(graphdef, state)
        return model(x)

    x = jax.ShapeDtypeStruct((8, 128), F32)
    pair = extract_ir(forward, graphdef, state, x)
    assert pair.stablehlo_ir == jax.jit(forward, static_argnums=(0,)).lower(graphdef, state, x).as_text()
    assert ((128, 128), "float32") in pair.input_signature


def test_equinox_partition_is_traced_and_its_static_half_static():
    eqx = pytest.importorskip("equinox")
    model = eqx.nn.MLP(64, 64, 256, 2, key=jax.random.key(0))
    params, static = eqx.partition(model, eqx.is_array)  # arrays traced, the rest (activations...) static

    def forward(params, static, x):
        return jax.vmap(eqx.combine(params, static))(x)

    x = jax.ShapeDtypeStruct((16, 64), F32)
    pair = extract_ir(forward, params, static, x)
    assert pair.stablehlo_ir == jax.jit(forward, static_argnums=(1,)).lower(params, static, x).as_text()
    assert ((256, 64), "float32") in pair.input_signature
