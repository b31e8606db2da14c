"""CIFAR ResNets: shapes, parameter counts, free widths, channel placement, masks and a one-step training smoke test."""

import re

import jax
import numpy as np
import pytest

from combax.models.classifier_train import TrainConfig, evaluate, fit, init_variables, predict
from combax.models.resnet import Block, ResNet, _place, conv_layout, resnet20, resnet32, resnet56, resnet_cifar


def _n_params(tree) -> int:
    return sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(tree))


def _expected_params(n: int, c_in: int, base: int, classes: int) -> int:
    """Conv kernels + BN scale/bias + dense layer of the zero-pad CIFAR ResNet, counted by hand."""
    w = [base, 2 * base, 4 * base]
    convs = 9 * c_in * base
    bn = 2 * base
    prev = base
    for s in range(3):
        for _ in range(n):
            convs += 9 * prev * w[s] + 9 * w[s] * w[s]
            bn += 4 * w[s]
            prev = w[s]
    return convs + bn + prev * classes + classes


@pytest.mark.parametrize(("ctor", "n"), [(resnet20, 3), (resnet32, 5), (resnet56, 9)])
def test_parameter_count_matches_hand_count(ctor, n):
    model = ctor()
    shapes = jax.eval_shape(lambda: init_variables(model, (32, 32, 3)))
    assert _n_params(shapes["params"]) == _expected_params(n, 3, 16, 10)
    assert len(conv_layout(model, (32, 32, 3))) == 6 * n + 1


def test_resnet20_output_shape_and_layout():
    model = resnet20(num_classes=7)
    v = init_variables(model, (32, 32, 1))
    out = model.apply(v, np.zeros((2, 32, 32, 1), np.float32))
    assert out.shape == (2, 7)
    lay = conv_layout(model, (32, 32, 1))
    assert [c.h_out for c in lay] == [32] * 7 + [16] * 6 + [8] * 6
    assert [(c.src, c.dst) for c in lay] == [(k - 1, k) for k in range(1, 20)]
    assert lay[0].c_in == 1 and lay[-1].c_out == 64


def test_projection_shortcut_adds_1x1_convs_only_where_shape_changes():
    model = resnet_cifar(20, shortcut="projection")
    v = jax.eval_shape(lambda: init_variables(model, (32, 32, 1)))
    proj = sorted(k for k in v["params"] if k.endswith("_proj"))
    assert proj == ["block3_proj", "block6_proj"]
    assert v["params"]["block3_proj"]["kernel"].shape == (1, 1, 16, 32)


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [
        ({"depth": 21}, "`depth` must be 6 n + 2"),
        ({"depth": 20, "shortcut": "dense"}, "`shortcut` must be one of"),
        ({"depth": 20, "base_width": 0}, "`base_width` and `num_classes` must be positive"),
    ],
)
def test_bad_arguments_raise(kwargs, msg):
    with pytest.raises(ValueError, match=re.escape(msg)):
        resnet_cifar(**kwargs)


@pytest.mark.parametrize(
    "positions",
    [np.array([0, 1, 2]), np.array([0, 1, -1]), np.array([2, 0, 4]), np.array([-1, 3, 1]), np.array([0, 1])],
)
def test_place_matches_scatter(positions):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 3, positions.size)).astype(np.float32)
    width = 5
    ref = np.zeros((2, 3, 3, width), np.float32)
    for i, p in enumerate(positions):
        if p >= 0:
            ref[..., p] = x[..., i]
    np.testing.assert_allclose(np.asarray(_place(x, positions, width)), ref, atol=1e-6)


def test_free_widths_and_all_ones_masks():
    rng = np.random.default_rng(1)
    blocks = (Block(3, 2, 3, 4, 1, out_pos=(0, 2, 3), skip_pos=(1, -1, 2)), Block(4, 5, 6, 6, 2))
    model = ResNet(stem=3, blocks=blocks, num_classes=4)
    v = init_variables(model, (8, 8, 2))
    x = rng.random((3, 8, 8, 2)).astype(np.float32)
    assert model.apply(v, x).shape == (3, 4)
    full = resnet_cifar(8, base_width=4)
    vf = init_variables(full, (8, 8, 2))
    lay = conv_layout(full, (8, 8, 2))
    ones = (tuple(np.ones(c.c_out, np.float32) for c in lay), tuple(np.ones(b.width, np.float32) for b in full.blocks))
    np.testing.assert_array_equal(predict(full, vf, x), predict(full, vf, x, masks=ones))


def test_training_updates_params_and_batch_stats():
    rng = np.random.default_rng(0)
    x = rng.random((64, 8, 8, 1)).astype(np.float32)
    y = (x.mean(axis=(1, 2, 3)) > 0.5).astype(np.int64)
    model = resnet_cifar(8, base_width=4, num_classes=2)
    v0 = init_variables(model, (8, 8, 1), seed=0)
    v1 = fit(model, x, y, TrainConfig(epochs=2, batch_size=32, lr=0.05, warmup_steps=0, progress=False), variables=v0)
    assert not np.allclose(v0["batch_stats"]["stem_bn"]["mean"], v1["batch_stats"]["stem_bn"]["mean"])
    assert not np.allclose(v0["params"]["fc"]["kernel"], v1["params"]["fc"]["kernel"])
    assert 0.0 <= evaluate(model, v1, x, y) <= 1.0
    with pytest.raises(ValueError, match=re.escape("`y` must have shape (64,) to match `x`")):
        fit(model, x, y[:10], TrainConfig(epochs=1, progress=False))


@pytest.mark.slow
def test_resnet8_learns_digits():
    from combax.data import digits, pad_to, stratified_split

    ds = pad_to(digits(), 16)
    tr, te = stratified_split(ds.labels, 0.2, seed=0)
    model = resnet_cifar(8, base_width=8)
    v = fit(model, ds.images[tr], ds.labels[tr], TrainConfig(epochs=4, batch_size=64, lr=0.1, progress=False))
    assert evaluate(model, v, ds.images[te], ds.labels[te]) > 0.8
