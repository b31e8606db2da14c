"""Chain-CNN descriptions (MobileNetV2, VGG) and the Flax module with activation/merge sets."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from combax.models.chain import ChainSpec, ConvSpec
from combax.models.mobilenetv2 import mobilenetv2, mobilenetv2_spec
from combax.models.vgg import vgg, vgg_spec


def test_mobilenetv2_structure_matches_spec():
    s = mobilenetv2_spec(1.0)
    assert s.L == 50
    assert s.breaks == (5, 11, 20, 41)
    assert s.residuals == (
        (5, 8),
        (11, 14),
        (14, 17),
        (20, 23),
        (23, 26),
        (26, 29),
        (32, 35),
        (35, 38),
        (41, 44),
        (44, 47),
    )
    assert s.optional == tuple(range(2, 51, 3))
    assert len(s.default_acts) == 33
    assert len(s.valid_blocks()) == 171
    assert max(j - i for i, j in s.valid_blocks()) == 21
    assert s.valid_block(20, 41)  # a whole stage merges into one conv (spec §1.5)
    assert not s.valid_block(20, 24)  # crosses the residual (23, 26)
    assert not s.valid_block(4, 6)  # contains the break at 5


def test_vgg19_structure_matches_spec():
    s = vgg_spec(19)
    assert (s.L, s.breaks, s.pools) == (16, (2, 4, 8, 12, 16), (2, 4, 8, 12, 16))
    assert len(s.valid_blocks()) == 36


def test_valid_blocks_brute_force_definition():
    """Every valid block is laminar to every residual and contains no break; every other block fails one rule."""
    s = mobilenetv2_spec(0.5)
    valid = set(s.valid_blocks())
    for i in range(s.L):
        for j in range(i + 1, s.L + 1):
            no_break = not any(i < b < j for b in s.breaks)
            laminar = all(j <= a or b <= i or (i <= a and b <= j) or (a <= i and j <= b) for a, b in s.residuals)
            assert ((i, j) in valid) == (no_break and laminar), (i, j)


def test_random_structure_is_valid():
    s = mobilenetv2_spec(0.5)
    rng = np.random.default_rng(0)
    for _ in range(20):
        A, S = s.random_structure(rng)
        assert s.check_structure(A, S) == (A, S)


@pytest.mark.parametrize(
    ("acts", "cuts", "msg"),
    [
        ((3,), (1, 2), "`acts` must be a subset of `cuts` ∪ {50}; positions [3] are not cuts"),
        ((), (60,), "`cuts` must hold positions in 1..49; got [60]"),
        ((1,), (1, 10, 11), "merge groups [(1, 10), (11, 50)]"),
    ],
)
def test_check_structure_errors(acts, cuts, msg):
    with pytest.raises(ValueError, match=re.escape(msg)):
        mobilenetv2_spec(0.5).check_structure(acts, cuts)


def test_check_structure_rejects_activation_without_slot():
    s = vgg_spec(11)
    with pytest.raises(ValueError, match=re.escape("`acts` must hold positions in 1..8; got [9]")):
        s.check_structure((9,), ())


def test_spec_rejects_bad_chains():
    with pytest.raises(ValueError, match=re.escape("`convs`: conv 1 outputs 4 channels but conv 2 takes 5")):
        ChainSpec(convs=(ConvSpec(3, 4), ConvSpec(5, 6)), default_acts=(1, 2))
    with pytest.raises(ValueError, match=re.escape("`residuals` must be laminar")):
        convs = tuple(ConvSpec(4, 4) for _ in range(4))
        ChainSpec(convs=convs, default_acts=(1, 2, 3, 4), residuals=((0, 2), (1, 3)))


def test_feature_shapes():
    s = mobilenetv2_spec(0.5, in_channels=1, n_classes=10)
    shapes = s.feature_shapes(32)
    assert shapes[0] == (16, 16, 16) and shapes[-1] == (1, 1, 160)
    v = vgg_spec(11, 0.25, in_channels=1)
    assert v.feature_shapes(32)[-1] == (1, 1, 128)


@pytest.fixture(scope="module")
def small_mbv2():
    net = mobilenetv2(0.35, n_classes=10, in_channels=1)
    x = np.random.default_rng(0).normal(size=(4, 32, 32, 1)).astype(np.float32)
    variables = net.init(jax.random.key(0), x)
    return net, variables, x


def test_mobilenetv2_output_shape_and_params(small_mbv2):
    net, variables, x = small_mbv2
    y = net.apply(variables, x)
    assert y.shape == (4, 10)
    assert sum(a.size for a in jax.tree.leaves(variables["params"])) > 100_000
    assert len([k for k in variables["params"] if k.startswith("conv")]) == 50


def test_parameter_tree_does_not_depend_on_structure(small_mbv2):
    net, variables, x = small_mbv2
    A, S = net.spec.random_structure(np.random.default_rng(1))
    other = net.clone(acts=A, cuts=S).init(jax.random.key(0), x)
    assert jax.tree.structure(other) == jax.tree.structure(variables)
    assert all(a.shape == b.shape for a, b in zip(jax.tree.leaves(other), jax.tree.leaves(variables)))


def test_masked_mode_equals_structural_default(small_mbv2):
    net, variables, x = small_mbv2
    mask = np.zeros(net.spec.L + 1, np.float32)
    mask[list(net.spec.default_acts)] = 1.0
    np.testing.assert_allclose(net.apply(variables, x, act_mask=mask), net.apply(variables, x), rtol=1e-5, atol=1e-5)
    mask[3] = 0.0  # removing an activation changes the function
    assert not np.allclose(net.apply(variables, x, act_mask=mask), net.apply(variables, x), atol=1e-6)


def test_one_training_step_reduces_loss():
    net = vgg(11, 0.125, n_classes=10, in_channels=1)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 32, 32, 1)).astype(np.float32)
    y = rng.integers(0, 10, 16)
    v = net.init(jax.random.key(0), x)
    tx = optax.sgd(0.05, momentum=0.9)

    def loss_fn(p, stats):
        logits, new = net.apply({"params": p, "batch_stats": stats}, x, train=True, mutable=["batch_stats"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), new

    params, stats = v["params"], v["batch_stats"]
    opt = tx.init(params)
    losses = []
    for _ in range(3):
        (loss, new), g = jax.value_and_grad(loss_fn, has_aux=True)(params, stats)
        upd, opt = tx.update(g, opt)
        params, stats = optax.apply_updates(params, upd), new["batch_stats"]
        losses.append(float(loss))
    assert losses[-1] < losses[0]
    assert jnp.isfinite(losses[-1])
