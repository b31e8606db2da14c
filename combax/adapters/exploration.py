"""PPO with an intrinsic reward (none, EMI or RND) on pure-JAX environments, purejaxrl style.

One iteration (``update``) for one seed:

1. roll out ``num_steps`` steps of ``num_envs`` environments with ``lax.scan`` (finished episodes are reset);
2. compute the intrinsic reward of every transition with the bonus networks **from before** this iteration's update
   (EMI: embedding-space prediction error; RND: distillation error of s');
3. normalise it by a running standard deviation of the discounted intrinsic return (RND's scheme, for both);
4. train the bonus networks on the batch (on-policy only, no replay);
5. add the intrinsic reward before GAE: either into the reward of a single value head
   (``int_head=False``, EMI's original wiring: r = r_ext + c_int r_int) or through a separate, non-episodic
   intrinsic value head (``int_head=True``, RND's wiring: A = c_ext A_ext + c_int A_int);
6. PPO update.

``make_train`` returns pure ``init(key)`` and ``update_chunk(state)`` (``updates_per_call`` iterations under one
``lax.scan``); :func:`run_exploration` jits them once (vmapped over seeds with ``vmap_seeds=True``, else one seed
after the other through the same compiled function) and calls the chunk repeatedly with a
progress bar. Every call after the first reuses the compiled chunk (same shapes, no recompilation).

Logged per seed: the episode index (1-based, counting episodes of all parallel environments in the order they
finish) and the environment-step count of the first success, and per iteration the number of finished episodes,
their summed return and their successes (return and success-rate curves).

Gradient semantics: the intrinsic reward is a constant for the policy (no gradient flows from PPO into the bonus
networks or back). Batch shapes: a seed's rollout is (num_steps, num_envs, ...); seeds are a leading axis of every
logged array and of the final state.
"""

import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax.training.train_state import TrainState

from combax.models.emi import EMIConfig, EMINetworks, emi_update, intrinsic_reward, make_emi_state
from combax.models.ppo import PPOBatch, PPOConfig, gae, make_actor_critic_state, ppo_update
from combax.models.rnd import RNDConfig, RNDNetworks, make_rnd_state, rnd_reward, rnd_update

AGENTS = ("ppo", "emi", "rnd")


@dataclass(frozen=True, slots=True)
class ExplorationConfig:
    """Agent and wiring.

    Attributes
    ----------
    agent : ``"ppo"`` (no intrinsic reward), ``"emi"`` or ``"rnd"``.
    ppo, emi, rnd : the component configs (only the agent's bonus config is used).
    int_coef, ext_coef : weights of the intrinsic and extrinsic advantages (``int_head=True``) or of the intrinsic
        reward added to the extrinsic one (``int_head=False``, ``ext_coef`` unused).
    int_gamma : discount of the (non-episodic) intrinsic return.
    int_head : separate intrinsic value head (RND style) instead of adding the reward before one head.
    normalize_int : divide the intrinsic reward by the running std of its discounted return.
    updates_per_call : iterations per compiled chunk (the progress bar advances once per chunk).
    """

    agent: str = "ppo"
    ppo: PPOConfig = field(default_factory=PPOConfig)
    emi: EMIConfig = field(default_factory=EMIConfig)
    rnd: RNDConfig = field(default_factory=RNDConfig)
    int_coef: float = 1.0
    ext_coef: float = 2.0
    int_gamma: float = 0.99
    int_head: bool = True
    normalize_int: bool = True
    updates_per_call: int = 10

    def __post_init__(self):
        if self.agent not in AGENTS:
            raise ValueError(f"`agent` must be one of {AGENTS}; got {self.agent!r}")
        if int(self.updates_per_call) != self.updates_per_call or self.updates_per_call < 1:
            raise ValueError(f"`updates_per_call` must be a positive integer; got {self.updates_per_call!r}")
        if self.int_coef < 0 or self.ext_coef < 0:
            raise ValueError(f"`int_coef` and `ext_coef` must be >= 0; got {self.int_coef}, {self.ext_coef}")

    @property
    def uses_int_head(self) -> bool:
        return self.int_head and self.agent != "ppo"


def default_config(agent: str, env: str = "deepsea", *, num_envs: int = 32, int_coef: float | None = None):
    """The :class:`ExplorationConfig` used by the CLI, the demo and the benchmark for ``agent`` on ``env``.

    DeepSea: 32 environments x 16 steps per update. MountainCar: 32 x 32 steps. EMI uses the paper's d = 2, the
    residual reward and the original's Atari loss weights except ``lam_err = 0.01`` (Atari: 1e2): with DeepSea's
    randomised action mapping the effect of an action depends on the cell, which only the error model alpha(s, a)
    can express; a heavy penalty on alpha leaves a large residual on familiar transitions that drowns the novelty
    signal (at 4000 episodes, 0/5 seeds solved DeepSea N = 14 with 1e2, 1e0, and 1e0 with d = 8; 2/5 with 1e-2,
    chosen on those same seeds; ``benchmarks/results/emi.md`` has both). EMI and RND feed a separate intrinsic
    value head.
    """
    if agent not in AGENTS:
        raise ValueError(f"`agent` must be one of {AGENTS}; got {agent!r}")
    if env not in ("deepsea", "mountaincar"):
        raise ValueError(f"`env` must be 'deepsea' or 'mountaincar'; got {env!r}")
    num_steps = 16 if env == "deepsea" else 32
    ppo = PPOConfig(num_envs=num_envs, num_steps=num_steps, num_minibatches=4 if num_envs * num_steps % 4 == 0 else 1)
    extra = {} if int_coef is None else {"int_coef": float(int_coef)}
    return ExplorationConfig(agent=agent, ppo=ppo, emi=EMIConfig(d=2, lam_err=0.01), **extra)


class RunnerState(NamedTuple):
    """Carry of one seed between iterations."""

    ac: TrainState
    bonus: Any  # EMI or RND TrainState, or () for plain PPO
    env_params: Any
    env_state: Any
    obs: jax.Array  # (num_envs, obs_dim)
    key: jax.Array
    ep_return: jax.Array  # (num_envs,) return of the running episodes
    int_ema: jax.Array  # (num_envs,) running discounted intrinsic return
    rms: jax.Array  # (3,) mean, var, count of int_ema (for normalisation)
    episodes: jax.Array  # finished episodes so far
    steps: jax.Array  # environment steps so far (all envs)
    first_success_episode: jax.Array  # -1 until the first success
    first_success_step: jax.Array


class UpdateMetrics(NamedTuple):
    """Per iteration (one row per update)."""

    episodes: jax.Array  # cumulative finished episodes after the update
    steps: jax.Array  # cumulative environment steps after the update
    n_episodes: jax.Array  # episodes finished during the rollout
    return_sum: jax.Array
    successes: jax.Array
    int_reward: jax.Array  # mean raw intrinsic reward of the rollout
    entropy: jax.Array
    bonus_loss: jax.Array


class _Transition(NamedTuple):
    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    done: jax.Array
    next_obs: jax.Array
    value_ext: jax.Array
    value_int: jax.Array
    log_prob: jax.Array


def _tree_where(cond, a, b):
    return jax.tree_util.tree_map(lambda x, y: jnp.where(cond.reshape(cond.shape + (1,) * (x.ndim - 1)), x, y), a, b)


def make_train(env, config: ExplorationConfig):
    """Pure ``init(key) -> RunnerState`` and ``update_chunk(state) -> (state, UpdateMetrics[updates_per_call])``.

    Both are un-jitted and un-vmapped single-seed functions (jit / vmap them as you like). The seed key also draws
    the environment's parameters (the DeepSea action mapping), identically for every agent.
    """
    pc = config.ppo
    n_env, n_steps = pc.num_envs, pc.num_steps
    obs_dim, n_act = env.obs_dim, env.num_actions
    agent = config.agent
    int_head = config.uses_int_head
    emi_net = EMINetworks(config.emi)
    rnd_net = RNDNetworks(config.rnd)

    def init(key) -> RunnerState:
        k_env, k_ac, k_bonus, k_reset, k_run = jax.random.split(key, 5)
        env_params = env.default_params(k_env)
        obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k_reset, n_env), env_params)
        ac = make_actor_critic_state(k_ac, obs_dim, n_act, pc, int_head=int_head)
        if agent == "emi":
            bonus = make_emi_state(k_bonus, obs_dim, n_act, config.emi)
        elif agent == "rnd":
            bonus = make_rnd_state(k_bonus, obs_dim, config.rnd)
        else:
            bonus = ()
        zf = jnp.zeros((n_env,), jnp.float32)
        return RunnerState(
            ac=ac,
            bonus=bonus,
            env_params=env_params,
            env_state=env_state,
            obs=obs,
            key=k_run,
            ep_return=zf,
            int_ema=zf,
            rms=jnp.array([0.0, 1.0, 1e-4], jnp.float32),
            episodes=jnp.int32(0),
            steps=jnp.int32(0),
            first_success_episode=jnp.int32(-1),
            first_success_step=jnp.int32(-1),
        )

    def env_step(rs: RunnerState, _):
        key, k_act, k_step, k_reset = jax.random.split(rs.key, 4)
        logits, v_ext, v_int = rs.ac.apply_fn(rs.ac.params, rs.obs)
        action = jax.random.categorical(k_act, logits)
        log_prob = jnp.take_along_axis(jax.nn.log_softmax(logits), action[:, None], -1)[:, 0]
        out = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(k_step, n_env), rs.env_state, action, rs.env_params
        )
        obs_r, state_r = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k_reset, n_env), rs.env_params)
        done = out.done
        tr = _Transition(rs.obs, action, out.reward, done, out.obs, v_ext, v_int, log_prob)
        ep_ret = rs.ep_return + out.reward
        # first success: episodes finishing at this step are numbered in env order
        rank = jnp.cumsum(done.astype(jnp.int32))
        cand = jnp.min(jnp.where(out.success, rs.episodes + rank, jnp.iinfo(jnp.int32).max))
        new_success = (rs.first_success_episode < 0) & out.success.any()
        rs = rs._replace(
            env_state=_tree_where(done, state_r, out.state),
            obs=jnp.where(done[:, None], obs_r, out.obs),
            key=key,
            ep_return=jnp.where(done, 0.0, ep_ret),
            episodes=rs.episodes + done.sum().astype(jnp.int32),
            steps=rs.steps + n_env,
            first_success_episode=jnp.where(new_success, cand, rs.first_success_episode),
            first_success_step=jnp.where(new_success, rs.steps + n_env, rs.first_success_step),
        )
        log = (done, jnp.where(done, ep_ret, 0.0), out.success)
        return rs, (tr, log)

    def update(rs: RunnerState, _):
        rs, (traj, (dones, finished_returns, successes)) = jax.lax.scan(env_step, rs, None, n_steps)
        flat = lambda x: x.reshape((n_steps * n_env,) + x.shape[2:])  # noqa: E731
        s, a, s_next = flat(traj.obs), flat(traj.action), flat(traj.next_obs)
        a1h = jax.nn.one_hot(a, n_act)
        key, k_bonus, k_ppo = jax.random.split(rs.key, 3)

        if agent == "ppo":
            r_int = jnp.zeros((n_steps, n_env), jnp.float32)
            bonus, bonus_loss = rs.bonus, jnp.float32(0.0)
        else:
            if agent == "emi":
                r_int = intrinsic_reward(rs.bonus.params, emi_net, s, a1h, s_next)
                bonus, terms = emi_update(rs.bonus, emi_net, s, a1h, s_next, k_bonus)
            else:
                r_int = rnd_reward(rs.bonus.params, rnd_net, s_next)
                bonus, terms = rnd_update(rs.bonus, rnd_net, s_next, k_bonus)
            r_int = r_int.reshape(n_steps, n_env)
            bonus_loss = terms.loss
        r_int_raw_mean = r_int.mean()

        int_ema, rms = rs.int_ema, rs.rms
        if config.normalize_int and agent != "ppo":

            def ema_step(ema, r):
                ema = ema * config.int_gamma + r
                return ema, ema

            int_ema, emas = jax.lax.scan(ema_step, int_ema, r_int)
            rms = _rms_update(rms, emas.reshape(-1))
            r_int = r_int / jnp.sqrt(rms[1] + 1e-8)

        _, last_v_ext, last_v_int = rs.ac.apply_fn(rs.ac.params, rs.obs)
        if int_head:
            adv_e, tgt_e = gae(traj.reward, traj.value_ext, traj.done, last_v_ext, pc.gamma, pc.gae_lambda)
            no_done = jnp.zeros_like(traj.done)
            adv_i, tgt_i = gae(r_int, traj.value_int, no_done, last_v_int, config.int_gamma, pc.gae_lambda)
            adv = config.ext_coef * adv_e + config.int_coef * adv_i
        else:
            coef = config.int_coef if agent != "ppo" else 0.0
            adv, tgt_e = gae(traj.reward + coef * r_int, traj.value_ext, traj.done, last_v_ext, pc.gamma, pc.gae_lambda)
            tgt_i = jnp.zeros_like(tgt_e)

        batch = PPOBatch(
            obs=s,
            action=a,
            log_prob=flat(traj.log_prob),
            value_ext=flat(traj.value_ext),
            value_int=flat(traj.value_int),
            advantage=flat(adv),
            target_ext=flat(tgt_e),
            target_int=flat(tgt_i),
        )
        ac, (_, _, _, entropy) = ppo_update(rs.ac, batch, k_ppo, pc, int_head)
        rs = rs._replace(ac=ac, bonus=bonus, key=key, int_ema=int_ema, rms=rms)
        metrics = UpdateMetrics(
            episodes=rs.episodes,
            steps=rs.steps,
            n_episodes=dones.sum().astype(jnp.int32),
            return_sum=finished_returns.sum(),
            successes=successes.sum().astype(jnp.int32),
            int_reward=r_int_raw_mean,
            entropy=entropy,
            bonus_loss=bonus_loss,
        )
        return rs, metrics

    def update_chunk(rs: RunnerState):
        return jax.lax.scan(update, rs, None, config.updates_per_call)

    return init, update_chunk


def _rms_update(rms, x):
    """Parallel (Chan et al.) update of a running (mean, var, count) with the batch ``x``."""
    mean, var, count = rms[0], rms[1], rms[2]
    b_mean, b_var, b_count = x.mean(), x.var(), x.shape[0]
    delta = b_mean - mean
    tot = count + b_count
    new_mean = mean + delta * b_count / tot
    m2 = var * count + b_var * b_count + delta**2 * count * b_count / tot
    return jnp.stack([new_mean, m2 / tot, tot])


@dataclass(frozen=True, slots=True)
class ExplorationResult:
    """Learning curves and first-success statistics of one agent over several seeds.

    Attributes
    ----------
    agent, env : agent name and a description of the environment.
    seeds : (S,) the integer seeds.
    episodes, steps : (S, U) cumulative finished episodes / environment steps after each of the U updates.
    n_episodes, return_sum, successes, int_reward : (S, U) per-update logs (see :class:`UpdateMetrics`).
    first_success_episode, first_success_step : (S,) 1-based episode index / env steps of the first success,
        -1 where the seed never succeeded.
    optimal_return : the environment's optimal return (nan if unknown).
    seconds : wall time including compilation; compile_seconds : of that, the first (compiling) chunk.
    final_state : the final :class:`RunnerState`, seeds stacked on a leading axis (trained params for plotting).
    """

    agent: str
    env: str
    seeds: np.ndarray
    episodes: np.ndarray
    steps: np.ndarray
    n_episodes: np.ndarray
    return_sum: np.ndarray
    successes: np.ndarray
    int_reward: np.ndarray
    first_success_episode: np.ndarray
    first_success_step: np.ndarray
    optimal_return: float
    seconds: float
    compile_seconds: float
    final_state: Any = None

    @property
    def solved(self) -> np.ndarray:
        """(S,) bool: the seed reached the goal at least once within the budget."""
        return self.first_success_episode >= 0

    @property
    def solved_fraction(self) -> float:
        return float(self.solved.mean())

    def median_first_success_episode(self) -> float:
        """Median over the seeds that succeeded (nan if none did)."""
        ok = self.first_success_episode[self.solved]
        return float(np.median(ok)) if ok.size else float("nan")

    def median_first_success_step(self) -> float:
        ok = self.first_success_step[self.solved]
        return float(np.median(ok)) if ok.size else float("nan")

    def mean_return_curve(self) -> np.ndarray:
        """(S, U) mean return of the episodes finished in each update (nan where none finished)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.n_episodes > 0, self.return_sum / np.maximum(self.n_episodes, 1), np.nan)

    def final_return(self, last_episodes: int = 1000) -> np.ndarray:
        """(S,) mean return over (about) the last ``last_episodes`` episodes (whole updates, counted backwards)."""
        out = np.empty(len(self.seeds))
        for i in range(len(self.seeds)):
            cum = np.cumsum(self.n_episodes[i, ::-1])
            k = int(np.searchsorted(cum, last_episodes)) + 1
            n = self.n_episodes[i, -k:].sum()
            out[i] = self.return_sum[i, -k:].sum() / n if n else np.nan
        return out

    def final_success_rate(self, last_episodes: int = 1000) -> np.ndarray:
        """(S,) success rate over (about) the last ``last_episodes`` episodes."""
        out = np.empty(len(self.seeds))
        for i in range(len(self.seeds)):
            cum = np.cumsum(self.n_episodes[i, ::-1])
            k = int(np.searchsorted(cum, last_episodes)) + 1
            n = self.n_episodes[i, -k:].sum()
            out[i] = self.successes[i, -k:].sum() / n if n else np.nan
        return out

    def summary(self) -> dict:
        """JSON-ready numbers (no arrays of curves)."""
        fse = self.first_success_episode
        return {
            "agent": self.agent,
            "env": self.env,
            "seeds": int(len(self.seeds)),
            "episodes_budget": int(self.episodes[0, -1]),
            "steps_budget": int(self.steps[0, -1]),
            "solved_fraction": self.solved_fraction,
            "first_success_episode": [int(x) for x in fse],
            "median_first_success_episode": _nan_to_none(self.median_first_success_episode()),
            "first_success_step": [int(x) for x in self.first_success_step],
            "median_first_success_step": _nan_to_none(self.median_first_success_step()),
            "final_return_last_1k": [_nan_to_none(float(x)) for x in self.final_return()],
            "final_success_rate_last_1k": [_nan_to_none(float(x)) for x in self.final_success_rate()],
            "optimal_return": _nan_to_none(self.optimal_return),
            "seconds": round(self.seconds, 2),
            "compile_seconds": round(self.compile_seconds, 2),
        }


def _nan_to_none(x: float):
    return None if x != x else x


def _num_updates(env, config: ExplorationConfig, total_steps: int | None, episodes: int | None) -> int:
    per_update = config.ppo.num_envs * config.ppo.num_steps
    if (total_steps is None) == (episodes is None):
        raise ValueError("give exactly one of `total_steps` and `episodes`")
    if episodes is not None:
        if episodes < 1:
            raise ValueError(f"`episodes` must be >= 1; got {episodes}")
        max_steps = getattr(env, "max_steps", None)
        total_steps = episodes * max_steps  # exact for DeepSea (fixed length), an upper bound otherwise
    if total_steps < 1:
        raise ValueError(f"`total_steps` must be >= 1; got {total_steps}")
    updates = -(-total_steps // per_update)
    return -(-updates // config.updates_per_call) * config.updates_per_call


def run_exploration(
    env,
    config: ExplorationConfig,
    *,
    seeds=5,
    total_steps: int | None = None,
    episodes: int | None = None,
    progress: bool = True,
    vmap_seeds: bool = False,
) -> ExplorationResult:
    """Train ``config.agent`` on ``env`` for a fixed budget over several seeds and return its logs.

    Parameters
    ----------
    env : a :mod:`combax.envs` environment (DeepSea, MountainCar).
    config : :class:`ExplorationConfig`.
    seeds : an int S (seeds 0..S-1) or a sequence of integer seeds.
    total_steps, episodes : the budget, exactly one of them: environment steps over all parallel environments, or
        episodes (converted with ``env.max_steps``, exact for DeepSea). Rounded up to whole chunks of updates.
    progress : show a tqdm bar over the chunks.
    vmap_seeds : train all seeds at once under ``jax.vmap`` (one compiled function). The default (False) runs the
        seeds one after the other through one compiled single-seed function: the same computation per seed, but on
        this project's CPU machines (XLA CPU, jax 0.10.2) the seed-vmapped chunk intermittently deadlocks at run
        time (every thread asleep on a futex after compilation finished; seen for RND and for EMI with d = 8,
        with or without ``--xla_cpu_multi_thread_eigen=false``), while the single-seed chunk has not.

    Returns
    -------
    :class:`ExplorationResult`.

    Notes
    -----
    Cost: U = ceil(budget / (num_envs * num_steps)) updates, each O(num_envs * num_steps) network evaluations plus
    ``update_epochs`` (PPO) and ``epochs`` (bonus) passes over the batch, for all seeds at once. The first chunk
    compiles (tens of seconds on CPU); later chunks reuse it.
    """
    seeds = np.arange(seeds) if np.ndim(seeds) == 0 else np.asarray(seeds)
    if seeds.ndim != 1 or seeds.size < 1 or not np.issubdtype(seeds.dtype, np.integer):
        raise ValueError(f"`seeds` must be a positive int or a 1-d sequence of ints; got {seeds!r}")
    n_updates = _num_updates(env, config, total_steps, episodes)
    init, update_chunk = make_train(env, config)
    keys = jnp.stack([jax.random.PRNGKey(int(s)) for s in seeds])
    vmap_seeds = bool(vmap_seeds)
    from tqdm.auto import tqdm

    name = f"{config.agent} on {_env_name(env)}"
    n_chunks = n_updates // config.updates_per_call
    t0 = time.perf_counter()
    compile_s = 0.0
    if vmap_seeds:
        chunk_v = jax.jit(jax.vmap(update_chunk))
        rs = jax.jit(jax.vmap(init))(keys)
        chunks = []
        for i in tqdm(range(n_chunks), desc=name, disable=not progress, leave=False):
            rs, m = chunk_v(rs)
            if i == 0:
                jax.block_until_ready(m)
                compile_s = time.perf_counter() - t0
            chunks.append(m)
        metrics = jax.tree_util.tree_map(lambda *xs: np.concatenate([np.asarray(x) for x in xs], axis=1), *chunks)
    else:
        # one seed at a time through the same compiled (un-vmapped) chunk: compiled once, reused for every seed
        init_j, chunk_j = jax.jit(init), jax.jit(update_chunk)
        finals, per_seed = [], []
        bar = tqdm(total=n_chunks * len(seeds), desc=name, disable=not progress, leave=False)
        for key in keys:
            rs_i, chunks = init_j(key), []
            for _ in range(n_chunks):
                rs_i, m = chunk_j(rs_i)
                if not compile_s:
                    jax.block_until_ready(m)
                    compile_s = time.perf_counter() - t0
                chunks.append(m)
                bar.update()
            per_seed.append(jax.tree_util.tree_map(lambda *xs: np.concatenate([np.asarray(x) for x in xs]), *chunks))
            finals.append(rs_i)
        bar.close()
        metrics = jax.tree_util.tree_map(lambda *xs: np.stack(xs), *per_seed)
        rs = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *finals)
    jax.block_until_ready(rs)
    seconds = time.perf_counter() - t0
    return ExplorationResult(
        agent=config.agent,
        env=_env_name(env),
        seeds=seeds,
        episodes=metrics.episodes,
        steps=metrics.steps,
        n_episodes=metrics.n_episodes,
        return_sum=metrics.return_sum,
        successes=metrics.successes,
        int_reward=metrics.int_reward,
        first_success_episode=np.asarray(rs.first_success_episode),
        first_success_step=np.asarray(rs.first_success_step),
        optimal_return=float(getattr(env, "optimal_return", float("nan"))),
        seconds=seconds,
        compile_seconds=compile_s,
        final_state=rs,
    )


def _env_name(env) -> str:
    size = getattr(env, "size", None)
    return f"{type(env).__name__.lower()}{'' if size is None else f'-{size}'}"
