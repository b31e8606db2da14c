"""RND: the prediction error is higher on novel observations after training on repeated ones; the target is fixed."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from combax.models.rnd import RNDConfig, RNDNetworks, make_rnd_state, rnd_reward, rnd_update


def test_reward_higher_on_novel_observations_and_target_never_moves():
    cfg = RNDConfig(hidden=(32,), out_dim=8, minibatch=128, update_proportion=1.0)
    net = RNDNetworks(cfg)
    eye = np.eye(64, dtype=np.float32)
    seen, novel = jnp.asarray(eye[np.arange(256) % 16]), jnp.asarray(eye[32:])
    st = make_rnd_state(jax.random.PRNGKey(0), 64, cfg)
    target0 = st.params["params"]["target"]
    assert rnd_reward(st.params, net, seen).shape == (256,)
    upd = jax.jit(lambda t, k: rnd_update(t, net, seen, k))
    for i in range(30):
        st, terms = upd(st, jax.random.PRNGKey(i))
    jax.tree_util.tree_map(np.testing.assert_array_equal, st.params["params"]["target"], target0)
    old = float(rnd_reward(st.params, net, seen).mean())
    new = float(rnd_reward(st.params, net, novel).mean())
    assert new > 5 * old, (old, new)
    assert terms.loss.shape == ()


def test_config_error_names_the_argument():
    with pytest.raises(ValueError, match="`update_proportion`"):
        RNDConfig(update_proportion=0.0)
