"""The embedded synthetic gold-reward task: an exact Markov-chain "language model", a known reward.

World (the arrays of `rewardjax.theory`, see DESIGN.md "The embedded default"): a prompt x_1..x_P
is a Markov chain started from `prompt_init`; its last token is y_0, with law
`start_probs = prompt_init @ transition^(P-1)`; the response y_1..y_T continues the chain:

    log π_0(y | y_0) = Σ_{t=1..T} log transition[y_{t-1}, y_t]
    r(y_0, y) = Σ_{t=1..T} bigram_reward[y_{t-1}, y_t] + pattern_bonus · 1[pattern in y_1..y_T]

The additive part is what `rewardjax.theory` solves exactly; the pattern bonus is an optional
non-additive term it does not cover. Preference pairs (y^a, y^b) are two independent base-model
responses to one sampled prompt, labelled by Bradley–Terry on the gold reward,
P(y^a ≻ y^b) = σ(β (r(y^a) - r(y^b))), then flipped with probability `flip_rate` (Bradley & Terry,
1952; Gao et al., 2022, "Scaling Laws for Reward Model Overoptimization", arXiv:2210.10760).

Token ids: vocabulary token v (in [0, V)) becomes model id v + 1 (`ID_OFFSET`), so the pad id 0 is
never a real token; a model needs `vocab_size >= V + 1`, and its logits over the V tokens are
`logits[..., 1:V+1]`.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from rewardjax.data.pipeline import EncodedDataset, EncodeStats

__all__ = [
    "ID_OFFSET",
    "MarkovTask",
    "gold_reward",
    "make_markov_task",
    "pairs_to_batch",
    "pairs_to_dataset",
    "prompt_logprob",
    "response_logprob",
    "sample_preference_pairs",
    "sample_prompts",
    "sample_responses",
    "to_ids",
    "to_tokens",
]

ID_OFFSET = 1


def to_ids(tokens: Int[Array, ...]) -> Int[Array, ...]:
    """Vocabulary tokens v -> model ids v + 1 (0 stays the pad id)."""
    return tokens + ID_OFFSET


def to_tokens(ids: Int[Array, ...]) -> Int[Array, ...]:
    """Model ids -> vocabulary tokens (inverse of `to_ids`)."""
    return ids - ID_OFFSET


@dataclasses.dataclass(frozen=True, eq=False)
class MarkovTask:
    """The world's arrays (numpy, float64) and static sizes; see the module docstring."""

    start_probs: np.ndarray  # [V] law of y_0, the last prompt token
    transition: np.ndarray  # [V, V] row-stochastic
    bigram_reward: np.ndarray  # [V, V]
    length: int  # T, response length
    prompt_init: np.ndarray  # [V] law of x_1
    prompt_length: int = 1  # P
    pattern: tuple[int, ...] = ()
    pattern_bonus: float = 0.0

    @property
    def vocab_size(self) -> int:
        return self.transition.shape[0]

    @property
    def model_vocab_size(self) -> int:
        return self.vocab_size + ID_OFFSET


# A pytree (arrays as leaves, sizes and the pattern static), so the functions below jit on it.
jax.tree_util.register_dataclass(
    MarkovTask,
    data_fields=["start_probs", "transition", "bigram_reward", "prompt_init"],
    meta_fields=["length", "prompt_length", "pattern", "pattern_bonus"],
)


def make_markov_task(
    seed: int,
    *,
    vocab_size: int = 8,
    length: int = 8,
    prompt_length: int = 4,
    concentration: float = 1.0,
    memoryless: bool = False,
    reward: str = "bigram",
    reward_scale: float = 1.0,
    pattern: tuple[int, ...] = (),
    pattern_bonus: float = 0.0,
) -> MarkovTask:
    """A random world from `seed`: Dirichlet(concentration) transition rows (one row shared by all
    states when `memoryless`), uniform `prompt_init`, and N(0, reward_scale²) rewards per bigram
    (reward="bigram") or per token (reward="token": bigram_reward[a, b] = token_reward[b])."""
    if reward not in ("bigram", "token"):
        raise ValueError(f"reward must be 'bigram' or 'token', got {reward!r}")
    if prompt_length < 1 or length < 1:
        raise ValueError("prompt_length and length must be >= 1")
    if any(not 0 <= p < vocab_size for p in pattern):
        raise ValueError(f"pattern tokens must be in [0, {vocab_size})")
    rng = np.random.default_rng(seed)
    alpha = np.full(vocab_size, concentration)
    rows = 1 if memoryless else vocab_size
    transition = np.broadcast_to(rng.dirichlet(alpha, size=rows), (vocab_size, vocab_size)).copy()
    cols = (1 if reward == "token" else vocab_size, vocab_size)
    bigram = np.broadcast_to(reward_scale * rng.standard_normal(cols), transition.shape).copy()
    prompt_init = np.full(vocab_size, 1.0 / vocab_size)
    start = prompt_init @ np.linalg.matrix_power(transition, prompt_length - 1)
    return MarkovTask(
        start, transition, bigram, length, prompt_init, prompt_length, tuple(pattern), pattern_bonus
    )


@jax.jit
def response_logprob(
    task: MarkovTask, y0: Int[Array, " B"], response: Int[Array, "B T"]
) -> Float[Array, " B"]:
    """Exact log π_0(y | y_0) = Σ_t log transition[y_{t-1}, y_t] (vocabulary tokens, not ids)."""
    full = jnp.concatenate([jnp.asarray(y0)[:, None], jnp.asarray(response)], axis=1)
    log_t = jnp.log(jnp.asarray(task.transition, jnp.float32))
    return log_t[full[:, :-1], full[:, 1:]].sum(-1)


@jax.jit
def prompt_logprob(task: MarkovTask, prompt: Int[Array, "B P"]) -> Float[Array, " B"]:
    """Exact log p(x) = log prompt_init[x_1] + Σ_t log transition[x_{t-1}, x_t] of prompts."""
    prompt = jnp.asarray(prompt)
    init = jnp.log(jnp.asarray(task.prompt_init, jnp.float32))[prompt[:, 0]]
    return init + response_logprob(task, prompt[:, 0], prompt[:, 1:])


@jax.jit
def gold_reward(
    task: MarkovTask, y0: Int[Array, " B"], response: Int[Array, "B T"]
) -> Float[Array, " B"]:
    """r(y_0, y) = Σ_t bigram_reward[y_{t-1}, y_t] + pattern_bonus · 1[pattern occurs in y]."""
    response = jnp.asarray(response)
    full = jnp.concatenate([jnp.asarray(y0)[:, None], response], axis=1)
    r = jnp.asarray(task.bigram_reward, jnp.float32)[full[:, :-1], full[:, 1:]].sum(-1)
    m = len(task.pattern)
    if m == 0 or task.pattern_bonus == 0.0 or m > task.length:
        return r
    starts = task.length - m + 1
    hits = jnp.ones((response.shape[0], starts), bool)
    for j, p in enumerate(task.pattern):  # loop over the (short, static) pattern, not over tokens
        hits &= response[:, j : j + starts] == p
    return r + task.pattern_bonus * hits.any(-1)


@functools.partial(jax.jit, static_argnames="steps")
def _continue_chain(
    key: Array, log_transition: Float[Array, "V V"], first: Int[Array, " B"], steps: int
) -> Int[Array, "B steps"]:
    def step(prev, k):
        nxt = jax.random.categorical(k, log_transition[prev]).astype(jnp.int32)
        return nxt, nxt

    _, out = jax.lax.scan(step, first, jax.random.split(key, steps))
    return out.T


def _log(p: np.ndarray) -> jax.Array:
    return jnp.log(jnp.asarray(p, jnp.float32))


@functools.partial(jax.jit, static_argnames="n")
def sample_prompts(task: MarkovTask, key: Array, n: int) -> Int[Array, "n P"]:
    """n prompts x_1..x_P from the chain started at `prompt_init`."""
    k0, k1 = jax.random.split(key)
    first = jax.random.categorical(k0, _log(task.prompt_init), shape=(n,)).astype(jnp.int32)
    if task.prompt_length == 1:
        return first[:, None]
    rest = _continue_chain(k1, _log(task.transition), first, task.prompt_length - 1)
    return jnp.concatenate([first[:, None], rest], axis=1)


@jax.jit
def sample_responses(task: MarkovTask, key: Array, y0: Int[Array, " B"]) -> Int[Array, "B T"]:
    """One base-model response y_1..y_T per last prompt token y_0."""
    return _continue_chain(key, _log(task.transition), jnp.asarray(y0, jnp.int32), task.length)


def sample_preference_pairs(
    task: MarkovTask, key: Array, n: int, *, beta: float = 1.0, flip_rate: float = 0.0
) -> dict[str, np.ndarray]:
    """n Bradley–Terry-labelled pairs (vocabulary tokens; see the module docstring).

    Args:
      task: the world.
      key: PRNG key.
      n: number of pairs.
      beta: inverse temperature of the labeller (beta=0: coin flips; large: always the better one).
      flip_rate: probability of flipping each label afterwards (label noise).

    Returns:
      numpy dict: "prompt" int32 [n, P], "chosen", "rejected" int32 [n, T], "chosen_gold",
      "rejected_gold" float32 [n]. The two responses are independent draws, so a pair may hold the
      same response twice (probability Σ_y π_0(y | y_0)², small unless V^T is); its label is then
      a coin flip, as Bradley–Terry says, and it is kept.
    """
    if not 0.0 <= flip_rate <= 1.0:
        raise ValueError(f"flip_rate must be in [0, 1], got {flip_rate}")
    return {k: np.asarray(v) for k, v in _sample_pairs(task, key, n, beta, flip_rate).items()}


@functools.partial(jax.jit, static_argnames="n")
def _sample_pairs(task: MarkovTask, key: Array, n: int, beta: float, flip_rate: float):
    kp, ka, kb, kl, kf = jax.random.split(key, 5)
    prompt = sample_prompts(task, kp, n)
    y0 = prompt[:, -1]
    a, b = sample_responses(task, ka, y0), sample_responses(task, kb, y0)
    ra, rb = gold_reward(task, y0, a), gold_reward(task, y0, b)
    a_wins = jax.random.bernoulli(kl, jax.nn.sigmoid(beta * (ra - rb)))
    a_wins ^= jax.random.bernoulli(kf, flip_rate, (n,))
    pick = lambda x, y: jnp.where(a_wins.reshape((-1,) + (1,) * (x.ndim - 1)), x, y)
    return {
        "prompt": prompt,
        "chosen": pick(a, b),
        "rejected": pick(b, a),
        "chosen_gold": pick(ra, rb),
        "rejected_gold": pick(rb, ra),
    }


def pairs_to_batch(pairs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """All pairs as one pairwise batch (ids = tokens + 1, no padding: T_total = P + T)."""
    n, p = pairs["prompt"].shape
    batch = {}
    for name in ("chosen", "rejected"):
        tokens = to_ids(np.concatenate([pairs["prompt"], pairs[name]], axis=1)).astype(np.int32)
        batch[f"{name}_tokens"] = tokens
        batch[f"{name}_mask"] = np.ones_like(tokens)
        completion = np.ones_like(tokens)
        completion[:, :p] = 0
        batch[f"{name}_completion_mask"] = completion
        batch[f"{name}_gold"] = pairs[f"{name}_gold"].astype(np.float32)
    batch["margin"] = np.zeros(n, np.float32)
    batch["weight"] = np.ones(n, np.float32)
    batch["subset"] = np.zeros(n, np.int32)
    return batch


def pairs_to_dataset(pairs: dict[str, np.ndarray]) -> EncodedDataset:
    """The pairs as an `EncodedDataset` for `pipeline.batches` (shuffle, shard, resume)."""
    batch = pairs_to_batch(pairs)
    n, total = batch["chosen_tokens"].shape
    examples = [
        {
            "seqs": (batch["chosen_tokens"][i], batch["rejected_tokens"][i]),
            "prompt_len": pairs["prompt"].shape[1],
            "margin": 0.0,
            "subset": 0,
            "chosen_gold": float(batch["chosen_gold"][i]),
            "rejected_gold": float(batch["rejected_gold"][i]),
        }
        for i in range(n)
    ]
    return EncodedDataset("pairwise", examples, total, EncodeStats(n, 0, {}))
