"""Channel pruning of Flax ResNets: importance, problem building, physical pruning, the greedy baseline, fine-tuning.

Oracles: the masked full network (logits of the physically pruned network), ``ChannelProblem.evaluate`` (resource of
a selection counted by the solver package, independent of the shapes), HiGHS (optimum of the tiny instances).
"""

import re

import numpy as np
import pytest

from combax.adapters import pruning as P
from combax.models.classifier_train import TrainConfig, init_variables, predict
from combax.models.resnet import conv_layout, resnet_cifar
from combax.solvers import channels

SHAPE = (8, 8, 1)


def _tiny(shortcut="zero_pad", base=2, seed=0):
    model = resnet_cifar(8, base_width=base, shortcut=shortcut)
    v = init_variables(model, SHAPE, seed=seed)
    rng = np.random.default_rng(seed)
    stats = {k: {"mean": rng.normal(0, 0.1, a["mean"].shape), "var": rng.uniform(0.5, 1.5, a["var"].shape)}
             for k, a in v["batch_stats"].items()}  # fmt: skip
    params = {k: dict(a) for k, a in v["params"].items()}
    for a in params.values():
        if "scale" in a:
            a["bias"] = rng.normal(0, 0.2, np.shape(a["bias"]))
    return model, {"params": params, "batch_stats": stats}


def _random_selection(model, rng):
    lay = conv_layout(model, SHAPE)
    u = [rng.random(c.c_out) < 0.6 for c in lay]
    for x in u:
        x[rng.integers(x.size)] = True
    v = P._or_streams(model, lay, u)
    for b in range(len(model.blocks)):  # drop some stream channels that only the shortcut feeds (legal)
        t = 2 * b + 3
        extra = v[t] & ~u[t - 1]
        v[t] = v[t] & ~(extra & (rng.random(extra.size) < 0.5))
    return P.Selection(tuple(u), tuple(v))


def test_l1_importance_is_per_kernel_l1_with_unit_frobenius_norm():
    model, v = _tiny()
    mats = P.importance(model, v, mode="l1", input_shape=SHAPE)
    for c, m in zip(conv_layout(model, SHAPE), mats):
        w = np.asarray(v["params"][c.name]["kernel"], np.float64)
        ref = np.einsum("abij->ji", np.abs(w))
        np.testing.assert_allclose(m, ref / np.linalg.norm(ref), rtol=1e-12)
        assert m.shape == (c.c_out, c.c_in)
    mats4 = P.importance(model, v, mode="l1_4d", input_shape=SHAPE)
    assert mats4[1].shape == (4 * 0 + 2, 2, 3, 3)
    np.testing.assert_allclose([np.linalg.norm(m) for m in mats4], 1.0, rtol=1e-12)


def test_sum_normalisation_gives_every_layer_unit_total_and_the_same_ranking():
    model, v = _tiny(base=4)
    frob = P.importance(model, v, input_shape=SHAPE)
    total = P.importance(model, v, input_shape=SHAPE, normalisation="sum")
    for f, m in zip(frob, total):
        np.testing.assert_allclose(m.sum(), 1.0, rtol=1e-12)
        np.testing.assert_allclose(m, f / f.sum(), rtol=1e-12)  # a per-layer rescaling of the paper's matrices
    prob = P.channel_problem(model, v, "flops", 0.5, input_shape=SHAPE, normalisation="sum")
    np.testing.assert_allclose([c[2].sum() for c in prob.convs], 1.0, rtol=1e-12)
    assert prob.budget == P.channel_problem(model, v, "flops", 0.5, input_shape=SHAPE).budget
    # a node limit: proving this instance takes the B&B ~10^5 nodes (HiGHS and CP-SAT do not prove it in 60 s)
    sol = channels.solve(prob, "bnb", node_limit=300)
    ev = prob.evaluate(sol.keep_out, sol.keep)
    assert sol.success and ev.feasible
    np.testing.assert_allclose(ev.objective, sol.objective, rtol=1e-12)
    assert sol.objective <= sol.bound


def test_zero_layer_gives_zero_importance_not_nan():
    model, v = _tiny()
    v["params"]["block0_conv1"] = {"kernel": np.zeros_like(v["params"]["block0_conv1"]["kernel"])}
    for norm in P.NORMALISATIONS:
        mats = P.importance(model, v, input_shape=SHAPE, normalisation=norm)
        assert np.all(mats[1] == 0)


@pytest.mark.parametrize("shortcut", ["zero_pad", "projection"])
@pytest.mark.parametrize("seed", [0, 1])
def test_pruned_network_equals_masked_network_and_its_shapes_give_the_resource(shortcut, seed):
    rng = np.random.default_rng(seed)
    model, v = _tiny(shortcut, base=3, seed=seed)
    sel = _random_selection(model, rng)
    pruned = P.prune(model, v, sel, input_shape=SHAPE)
    x = rng.random((4, *SHAPE)).astype(np.float32)
    masked = predict(model, v, x, masks=P.masks_of(model, sel, SHAPE))
    np.testing.assert_allclose(predict(pruned.model, pruned.variables, x), masked, atol=1e-5)
    for resource in ("flops", "params"):
        prob = P.channel_problem(model, v, resource, 1.0, input_shape=SHAPE)
        ev = prob.evaluate(sel.keep_out, sel.keep)
        assert pruned.resource[resource] == ev.resource
    assert pruned.model.stem == sel.keep_out[0].sum()


@pytest.mark.parametrize("resource", ["flops", "params"])
def test_solver_selection_meets_the_budget_exactly_and_matches_highs(resource):
    model, v = _tiny(seed=2)
    prob = P.channel_problem(model, v, resource, 0.5, input_shape=SHAPE)
    sol = channels.solve(prob, method="bnb")
    ref = channels.solve(prob, method="highs")
    assert sol.status == "optimal" and ref.status == "optimal"
    np.testing.assert_allclose(sol.objective, ref.objective, rtol=1e-9)
    pruned = P.prune(model, v, sol, input_shape=SHAPE)
    assert pruned.resource[resource] == sol.resource <= prob.budget
    assert P.resource_from_shapes(pruned.model, pruned.variables, resource, input_shape=SHAPE) == sol.resource
    assert prob.evaluate(sol.keep_out, sol.keep).feasible


def test_greedy_baseline_bookkeeping_and_optimality_gap():
    model, v = _tiny(base=4, seed=3)
    prob = P.channel_problem(model, v, "flops", 0.5, input_shape=SHAPE)
    sol = channels.solve(prob, method="bnb")
    naive = P.greedy_l1(model, v, 0.5, input_shape=SHAPE)
    exact = P.greedy_l1(model, v, 0.5, bookkeeping="exact", input_shape=SHAPE)
    assert naive.estimated <= prob.budget
    assert exact.resource <= prob.budget
    for g in (naive, exact):  # reported numbers agree with the solver package's own evaluation
        ev = prob.evaluate(g.keep_out, g.keep)
        assert ev.resource == g.resource
        np.testing.assert_allclose(ev.objective, g.objective, rtol=1e-12)
    assert sol.objective >= exact.objective - 1e-12
    assert not prob.evaluate(exact.keep_out, exact.keep).violations


def test_ratio_one_keeps_every_channel():
    model, v = _tiny()
    prob = P.channel_problem(model, v, "flops", 1.0, input_shape=SHAPE)
    sol = channels.solve(prob)
    assert all(k.all() for k in sol.keep)
    pruned = P.prune(model, v, sol, input_shape=SHAPE)
    assert pruned.resource["flops"] == prob.full_resource


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [
        ({"resource": "energy"}, "`resource` must be one of"),
        ({"ratio": 0.0}, "`ratio` must lie in (0, 1]"),
        ({"resource": "latency"}, "`latency_model` must be given"),
        ({"mode": "l2"}, "`mode` must be one of"),
        ({"normalisation": "max"}, "`normalisation` must be one of ('frobenius', 'sum'); got 'max'"),
        ({"mode": "taylor"}, "`data` must be given as (x, y)"),
        ({"input_shape": (8, 8)}, "`input_shape` must be (H, W, C)"),
        ({"min_keep": 0}, "`min_keep` must be an int >= 1 or a float in (0, 1); got 0"),
        ({"min_keep": 1.5}, "`min_keep` as a float is a fraction of each layer's width, in (0, 1); got 1.5"),
        ({"min_keep": True}, "`min_keep` must be an int >= 1 or a float in (0, 1); got True"),
        ({"min_keep": 5}, "`min_keep` of map 1 must be in [1, 2]"),
    ],
)
def test_channel_problem_errors(kwargs, msg):
    model, v = _tiny()
    kwargs = {"input_shape": SHAPE, **kwargs}
    with pytest.raises(ValueError, match=re.escape(msg)):
        P.channel_problem(model, v, **kwargs)


def test_prune_rejects_inconsistent_selections():
    model, v = _tiny()
    sel = P.full_selection(model, SHAPE)
    keep = list(sel.keep)
    keep[3] = keep[3].copy()
    keep[3][0] = False  # conv output 0 of map 3 kept, its stream channel dropped
    with pytest.raises(ValueError, match=re.escape("map 3 keeps a conv output whose stream channel is dropped")):
        P.prune(model, v, P.Selection(sel.keep_out, tuple(keep)), input_shape=SHAPE)
    with pytest.raises(ValueError, match=re.escape("`solution` needs 7 keep_out and 8 keep masks")):
        P.prune(model, v, P.Selection(sel.keep_out[:-1], sel.keep), input_shape=SHAPE)


def test_taylor_importance_and_finetune_smoke():
    rng = np.random.default_rng(0)
    model, v = _tiny(base=2)
    x = rng.random((32, *SHAPE)).astype(np.float32)
    y = rng.integers(0, 10, 32)
    mats = P.importance(model, v, mode="taylor", data=(x, y), batch_size=16, n_batches=2, input_shape=SHAPE)
    assert [m.shape for m in mats] == [(c.c_out, c.c_in) for c in conv_layout(model, SHAPE)]
    assert all(np.all(m >= 0) and abs(np.linalg.norm(m) - 1) < 1e-9 for m in mats)
    prob = P.channel_problem(model, v, "flops", 0.6, input_shape=SHAPE, mode="taylor", data=(x, y), batch_size=16)
    pruned = P.prune(model, v, channels.solve(prob), input_shape=SHAPE)
    tuned = P.finetune(pruned, x, y, TrainConfig(epochs=1, batch_size=16, lr=0.05, progress=False))
    assert tuned.resource == pruned.resource
    assert not np.allclose(tuned.variables["params"]["fc"]["kernel"], pruned.variables["params"]["fc"]["kernel"])


@pytest.mark.parametrize("min_keep", [3, 0.4])
def test_min_keep_every_conv_keeps_at_least_that_many_outputs(min_keep):
    model, v = _tiny(base=4, seed=1)
    prob = P.channel_problem(model, v, "flops", 0.35, input_shape=SHAPE, min_keep=min_keep)
    outs = [c.c_out for c in conv_layout(model, SHAPE)]
    need = [3 if isinstance(min_keep, int) else int(np.ceil(min_keep * w)) for w in outs]  # 0.4 of 4, 8, 16: 2, 4, 7
    assert list(prob.min_counts[1:]) == need and prob.min_resource <= prob.budget
    sol = channels.solve(prob, "bnb", node_limit=300)
    assert sol.success and prob.evaluate(sol.keep_out, sol.keep).feasible
    assert all(int(u.sum()) >= n for u, n in zip(sol.keep_out, need)), [int(u.sum()) for u in sol.keep_out]
    free = channels.solve(P.channel_problem(model, v, "flops", 0.35, input_shape=SHAPE), "bnb", node_limit=300)
    assert any(int(u.sum()) < n for u, n in zip(free.keep_out, need))  # the minimum binds on this model
    pruned = P.prune(model, v, sol, input_shape=SHAPE)
    assert pruned.resource["flops"] == sol.resource
