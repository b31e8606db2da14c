"""Conv merging is exact: the merged plain CNN equals the chain network run with the same (A, S)."""

import jax
import numpy as np
import pytest

from combax.adapters.merge import base_structure, merge
from combax.models.mobilenetv2 import mobilenetv2
from combax.models.vgg import vgg


def _with_random_bn(variables, seed):
    """BN statistics and affine terms away from the identity, so that folding them is actually exercised."""
    rng = np.random.default_rng(seed)
    stats = {
        k: {"mean": rng.normal(0, 0.2, np.shape(a["mean"])), "var": rng.uniform(0.5, 2.0, np.shape(a["var"]))}
        for k, a in variables["batch_stats"].items()
    }
    params = {}
    for k, a in variables["params"].items():
        a = dict(a)
        if "scale" in a:
            a["scale"] = rng.uniform(0.5, 1.5, np.shape(a["scale"]))
            a["bias"] = rng.normal(0, 0.2, np.shape(a["bias"]))
        params[k] = a
    return {"params": params, "batch_stats": stats}


@pytest.fixture(scope="module", params=["mobilenetv2", "vgg"])
def network(request):
    if request.param == "mobilenetv2":
        net = mobilenetv2(0.35, n_classes=10, in_channels=1)
    else:
        net = vgg(11, 0.125, n_classes=10, in_channels=1)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 1)).astype(np.float32)
    variables = _with_random_bn(net.init(jax.random.key(0), x), seed=1)
    return net, variables, x


def test_merge_of_the_base_structure_keeps_every_conv(network):
    net, variables, x = network
    merged = merge(net, variables)
    assert (merged.acts, merged.cuts) == base_structure(net.spec)
    np.testing.assert_allclose(merged.apply(merged.params, x), net.apply(variables, x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("seed", range(4))
def test_random_valid_structures_merge_exactly(network, seed):
    net, variables, x = network
    A, S = net.spec.random_structure(np.random.default_rng(seed))
    merged = merge(net, variables, A, S)
    assert merged.n_convs == len(net.spec.stem) + len(S) + 1 + len(net.spec.head)
    expected = net.clone(acts=A, cuts=S).apply(variables, x)
    np.testing.assert_allclose(merged.apply(merged.params, x), expected, rtol=1e-4, atol=1e-4)


def test_merge_rejects_invalid_structure(network):
    net, variables, _ = network
    with pytest.raises(ValueError, match="not cuts"):
        merge(net, variables, acts=(1,), cuts=(2,))


def test_merge_rejects_a_model_that_is_not_a_chain():
    with pytest.raises(ValueError, match="`model` must be a combax ChainNet"):
        merge(object(), {})
