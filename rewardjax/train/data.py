"""The encoded train and eval sets a config describes: the synthetic gold-reward Markov task
(`data.source = "synthetic"`) or local files (`data.source = "files"`); `with_packing`: the train
set's batches packed (`config.train.packing`, `rewardjax.data.packing`)."""

from __future__ import annotations

import dataclasses
import math

import jax
import ml_collections
import numpy as np

from rewardjax import data as data_lib
from rewardjax import judges, parallel
from rewardjax.data import synthetic

__all__ = ["Data", "markov_task", "read_data", "tokenizer_from_config", "with_packing"]


@dataclasses.dataclass(frozen=True)
class Data:
    """Encoded train and eval sets, and the synthetic task's world or the files' tokenizer."""

    train: data_lib.EncodedDataset
    eval: data_lib.EncodedDataset | None
    task: synthetic.MarkovTask | None = None
    tokenizer: data_lib.Tokenizer | None = None
    extra_ids: int = 0  # ids added past the task's or tokenizer's (a judge's separator, verdicts)

    @property
    def vocab_size(self) -> int:
        """How many token ids the data may hold (the model needs as many embedding rows)."""
        base = self.task.model_vocab_size if self.task else self.tokenizer.vocab_size
        return base + self.extra_ids


def markov_task(c: ml_collections.ConfigDict) -> synthetic.MarkovTask:
    """The synthetic world `config.data.synthetic` describes."""
    return synthetic.make_markov_task(
        c.seed,
        vocab_size=c.vocab_size,
        length=c.length,
        prompt_length=c.prompt_length,
        concentration=c.concentration,
        memoryless=c.memoryless,
        reward=c.reward,
        reward_scale=c.reward_scale,
        pattern=tuple(c.pattern),
        pattern_bonus=c.pattern_bonus,
    )


def _synthetic_data(c: ml_collections.ConfigDict) -> Data:
    task = markov_task(c)
    # One draw split in two (train, then eval): one compilation of the sampler.
    pairs = synthetic.sample_preference_pairs(
        task,
        jax.random.PRNGKey(c.seed),
        c.num_train_pairs + c.num_eval_pairs,
        beta=c.beta,
        flip_rate=c.flip_rate,
    )
    part = lambda sl: synthetic.pairs_to_dataset({k: np.asarray(v)[sl] for k, v in pairs.items()})
    n = c.num_train_pairs
    return Data(part(slice(None, n)), part(slice(n, None)) if c.num_eval_pairs else None, task)


def tokenizer_from_config(c: ml_collections.ConfigDict) -> data_lib.Tokenizer:
    """`config.data.tokenizer`: "byte" or the path of a tokenizer.json."""
    return data_lib.ByteTokenizer() if c.tokenizer == "byte" else data_lib.HFTokenizer(c.tokenizer)


def _file_data(c: ml_collections.ConfigDict, seed: int) -> Data:
    if not c.train_path:
        raise ValueError("config.data.train_path is empty; set it to a local JSONL/Parquet file.")
    tokenizer = tokenizer_from_config(c)
    load = lambda path: data_lib.load_records(
        path, layout=c.layout, format=c.format, split=c.split, on_error=c.on_error
    )[0]
    train = load(c.train_path)
    if c.eval_path:
        held_out = load(c.eval_path)
    elif c.eval_fraction > 0:
        order = np.random.default_rng(seed).permutation(len(train))
        n_eval = max(1, round(c.eval_fraction * len(train)))
        if n_eval >= len(train):
            raise ValueError(
                f"config.data.eval_fraction={c.eval_fraction} leaves no training records "
                f"out of {len(train)}."
            )
        held_out = [train[i] for i in order[:n_eval]]
        train = [train[i] for i in sorted(order[n_eval:])]
    else:
        held_out = None
    encode = lambda records: data_lib.encode_records(
        records,
        tokenizer,
        max_length=c.max_length,
        overlength=c.overlength,
        max_prompt_length=c.max_prompt_length,
    )
    return Data(encode(train), encode(held_out) if held_out else None, tokenizer=tokenizer)


def _judge_data(loaded: Data, c: ml_collections.ConfigDict) -> Data:
    """`config.data.judge.enabled`: pairs as pairwise judge rows (`judges.pairs_to_judge_dataset`),
    the separator and verdict ids appended past the data's vocabulary."""
    ids = judges.JudgeIds.for_vocab(loaded.vocab_size)
    convert = lambda d: judges.pairs_to_judge_dataset(d, ids, both_orders=c.both_orders)
    return dataclasses.replace(
        loaded,
        train=convert(loaded.train),
        eval=None if loaded.eval is None else convert(loaded.eval),
        extra_ids=ids.extra,
    )


def read_data(config: ml_collections.ConfigDict) -> Data:
    """The encoded data `config.data` describes, in the layouts its records have (the task then
    converts it: `rewardjax.train.tasks.load_data`)."""
    if config.data.source == "synthetic":
        loaded = _synthetic_data(config.data.synthetic)
    elif config.data.source == "files":
        loaded = _file_data(config.data, config.seed)
    else:
        raise ValueError(
            f"config.data.source={config.data.source!r}: expected 'synthetic' or 'files'."
        )
    if "judge" in config.data and config.data.judge.enabled:
        loaded = _judge_data(loaded, config.data.judge)
    return loaded


def with_packing(
    config: ml_collections.ConfigDict, dataset: data_lib.EncodedDataset, mesh: jax.sharding.Mesh
) -> data_lib.EncodedDataset:
    """`dataset` with `packing` set when `config.train.packing` is on and its examples pack (pairs,
    ranked lists, SFT: `data.PACKABLE_KINDS`), else `dataset` itself.

    Rows are `config.train.packing_length` tokens (None: the longest example) and each batch's row
    count is a multiple of this process's data-parallel devices, so the rows split evenly.
    """
    packable = dataset.kind in data_lib.PACKABLE_KINDS and "prompt_len" in dataset.examples[0]
    if not (config.train.get("packing", False) and packable):
        return dataset
    devices = math.prod(mesh.shape[axis] for axis in parallel.BATCH_AXES)
    packing = data_lib.Packing(
        length=config.train.get("packing_length"),
        row_multiple=max(1, devices // jax.process_count()),
    )
    return dataclasses.replace(dataset, packing=packing)
