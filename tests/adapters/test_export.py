"""ONNX export of pure JAX functions, checked by onnxruntime against JAX itself."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("onnx", reason="ONNX export needs the `onnx` extra")
pytest.importorskip("onnxruntime", reason="checking exports needs the `onnx` extra")

import flax.linen as nn  # noqa: E402
import onnx  # noqa: E402

from combax.adapters.export import export_onnx, onnx_forward  # noqa: E402


class _ChainNet(nn.Module):
    """Every op a chain CNN uses: strided conv, BN, relu6, depthwise conv, crop, skip add, pool, dense."""

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(8, (3, 3), strides=2, padding=((1, 1), (1, 1)))(x)
        x = nn.BatchNorm(use_running_average=True)(x)
        x = jax.nn.relu6(x)
        y = nn.Conv(8, (3, 3), feature_group_count=8, padding=((2, 2), (2, 2)), use_bias=False)(x)
        y = jax.lax.pad(y, 0.0, ((0, 0, 0), (-1, -1, 0), (-1, -1, 0), (0, 0, 0)))  # centre crop
        x = jax.nn.relu(x + y)
        x = nn.Conv(12, (1, 1))(x)
        x = jnp.clip(x, 0.0, 6.0)
        x = x[:, 1:, 1:, :]
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(10)(x)


class _ResBlock(nn.Module):
    features: int
    stride: int

    @nn.compact
    def __call__(self, x):
        h = nn.Conv(self.features, (3, 3), strides=self.stride, padding=1, use_bias=False)(x)
        h = nn.relu(nn.BatchNorm(use_running_average=True)(h))
        h = nn.Conv(self.features, (3, 3), padding=1, use_bias=False)(h)
        h = nn.BatchNorm(use_running_average=True)(h)
        if self.stride != 1 or x.shape[-1] != self.features:  # option A: subsample and zero-pad channels
            x = x[:, :: self.stride, :: self.stride, :]
            extra = self.features - x.shape[-1]
            x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))
        return nn.relu(x + h)


class _TinyResNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.BatchNorm(use_running_average=True)(nn.Conv(4, (3, 3), padding=1, use_bias=False)(x)))
        x = _ResBlock(4, 1)(x)
        x = _ResBlock(8, 2)(x)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(10)(x)


def _randomised(module, x, seed=0):
    variables = module.init(jax.random.key(seed), x)
    leaves, tree = jax.tree.flatten(variables)
    rng = np.random.default_rng(seed)
    # non-trivial BN statistics (positive variances) so folding is exercised
    leaves = [np.abs(a) + 0.5 + 0.1 * rng.normal(size=a.shape).astype(np.float32) for a in leaves]
    return jax.tree.unflatten(tree, [jnp.asarray(a, jnp.float32) for a in leaves])


@pytest.mark.parametrize("module", [_ChainNet(), _TinyResNet()], ids=["chain", "resnet"])
def test_export_matches_jax(tmp_path, module):
    x = np.random.default_rng(1).normal(size=(3, 16, 16, 3)).astype(np.float32)
    params = _randomised(module, x)

    def apply_fn(p, inp):
        return module.apply(p, inp)

    path = export_onnx(apply_fn, params, x, tmp_path / "net.onnx")
    model = onnx.load(path)
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["x"]
    assert [o.name for o in model.graph.output] == ["y"]
    want = np.asarray(apply_fn(params, x))
    got = onnx_forward(path, x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_export_keeps_convs_in_nchw_without_per_layer_transposes(tmp_path):
    x = np.zeros((1, 16, 16, 3), np.float32)
    module = _ChainNet()
    params = module.init(jax.random.key(0), x)
    path = export_onnx(lambda p, inp: module.apply(p, inp), params, x, tmp_path / "n.onnx")
    ops = [n.op_type for n in onnx.load(path).graph.node]
    assert ops.count("Conv") == 3
    assert ops.count("Transpose") == 1, ops  # only the NHWC input


def test_export_folds_constants(tmp_path):
    x = np.zeros((2, 8, 8, 3), np.float32)
    module = _ChainNet()
    params = module.init(jax.random.key(0), x)
    path = export_onnx(lambda p, inp: module.apply(p, inp), params, x, tmp_path / "n.onnx")
    model = onnx.load(path)
    ops = {n.op_type for n in model.graph.node}
    assert "Sqrt" not in ops  # BN's rsqrt(var + eps) is evaluated at export time
    biggest = max(int(np.prod(t.dims)) for t in model.graph.initializer)
    assert biggest <= 12 * 8 + 8 * 3 * 9  # no constant broadcast to the activation shape


def test_export_opset_18_reductions(tmp_path):
    x = np.random.default_rng(0).normal(size=(2, 5, 4)).astype(np.float32)
    fn = lambda p, inp: jnp.max(inp * p, axis=1) - jnp.min(inp, axis=2).sum(axis=1, keepdims=True)  # noqa: E731
    p = jnp.float32(2.0)
    for opset in (17, 18):
        path = export_onnx(fn, p, x, tmp_path / f"r{opset}.onnx", opset=opset)
        np.testing.assert_allclose(onnx_forward(path, x), np.asarray(fn(p, x)), rtol=1e-5, atol=1e-5)


def test_export_rejects_non_float32_input(tmp_path):
    msg = "`example_input` must be a float32 array of rank >= 1; got dtype float64, shape (2, 3)"
    with pytest.raises(ValueError, match=re.escape(msg)):
        export_onnx(lambda p, x: x, None, np.zeros((2, 3)), tmp_path / "a.onnx")


def test_export_rejects_old_opset(tmp_path):
    with pytest.raises(ValueError, match=re.escape("`opset` must be >= 13; got 11")):
        export_onnx(lambda p, x: x, None, np.zeros((2, 3), np.float32), tmp_path / "a.onnx", opset=11)


def test_export_names_unsupported_primitive(tmp_path):
    with pytest.raises(NotImplementedError, match="`sort`"):
        export_onnx(lambda p, x: jnp.sort(x), None, np.zeros((2, 3), np.float32), tmp_path / "a.onnx")


def test_onnx_forward_missing_file(tmp_path):
    with pytest.raises(ValueError, match=re.escape("`path` must be an existing ONNX file")):
        onnx_forward(tmp_path / "none.onnx", np.zeros(3, np.float32))
