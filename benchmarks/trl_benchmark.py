"""TRL train-step throughput (pairs/s): RewardTrainer and DPOTrainer on a tiny random Llama, CPU.

Runs in the separate TRL environment (TRL is not a rewardjax dependency):

    bash benchmarks/setup_trl_env.sh .venv-trl
    .venv-trl/bin/python benchmarks/trl_benchmark.py [--batch_size 16 --d_model 128 ...]

The model is built locally from a `transformers.LlamaConfig` with the dimensions of
`preference_pairs.py` (nothing is downloaded): `LlamaForSequenceClassification` (num_labels=1) for
the reward model, `LlamaForCausalLM` plus a frozen copy as the reference for DPO (sigmoid loss,
reference log-probs computed on the fly, TRL's default). The data are the token ids of
`preference_pairs.make_pairs`, the same as `rewardjax_train_benchmark.py` sees: pre-tokenised
`chosen_ids`/`rejected_ids` for RewardTrainer, and for DPOTrainer (which tokenises text itself) the
ids written as words of a word-level tokenizer whose ids are the token ids (checked to round-trip).

Each trainer runs its own `train()` loop for `warmup + steps` steps: float32 (bf16 off), CPU,
AdamW with clipping 1.0 and a linear decay (TRL's defaults), no logging, no saving, no progress
bar. A callback times the last `steps` optimiser steps, so data collation, forward, backward and
the optimiser update are all inside the timing, as in a real run.

Padding: what TRL 1.16 offers is used. Its collators pad the 2B rows of a batch (chosen and
rejected together) to the batch's longest row, right padding (`pad_to_multiple_of` is None off
Neuron); `RewardConfig` has no padding-free option; `DPOConfig.padding_free=True` only warns and
falls back to padding in this version ("temporarily unavailable since the DPO refactor"), and it
needs FlashAttention 2/3 (CUDA) anyway, so both trainers run padded. `max_length` is the mix's
longest prompt + completion, so nothing is truncated or filtered out. The batches are taken in
order (`train_sampling_strategy="sequential"`), so TRL sees the same batches as rewardjax
(TRL's default random order would draw other batch maxima on the long-tailed mix).

Prints a human summary on stderr and one JSON object on stdout (read by `compare_trl.py`).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import sys
import tempfile
import time
import warnings

import datasets
import preference_pairs
import tokenizers
import torch
import transformers
import trl

PAD, EOS = "<pad>", "<eos>"


class StepTimer(transformers.TrainerCallback):
    """Wall time from the end of optimiser step `warmup` to the end of the last step."""

    def __init__(self, warmup: int):
        self.warmup = warmup
        self.start = self.end = None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.warmup:
            self.start = time.perf_counter()
        self.end = time.perf_counter()


def word_tokenizer(vocab_size: int) -> transformers.PreTrainedTokenizerFast:
    """Word-level tokenizer whose token id i is the word `t{i}` (0 and 1: padding, end of text)."""
    vocab = {PAD: preference_pairs.PAD_ID, EOS: preference_pairs.EOS_ID}
    vocab.update({f"t{i}": i for i in range(2, vocab_size)})
    model = tokenizers.models.WordLevel(vocab, unk_token=PAD)
    tok = tokenizers.Tokenizer(model)
    tok.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=PAD
    )


def as_text(ids: list[int]) -> str:
    return "".join(EOS if i == preference_pairs.EOS_ID else f" t{i}" for i in ids)


def llama_config(args) -> transformers.LlamaConfig:
    return transformers.LlamaConfig(
        vocab_size=args.vocab_size,
        hidden_size=args.d_model,
        num_hidden_layers=args.n_layers,
        num_attention_heads=args.n_heads,
        num_key_value_heads=args.n_kv_heads,
        intermediate_size=args.d_ff,
        rms_norm_eps=args.norm_eps,
        max_position_embeddings=sum(preference_pairs.max_lengths(args)),
        pad_token_id=preference_pairs.PAD_ID,
        eos_token_id=preference_pairs.EOS_ID,
        bos_token_id=None,
        num_labels=1,
        tie_word_embeddings=False,
    )


def common_args(args, output_dir: str) -> dict:
    return dict(
        output_dir=output_dir,
        per_device_train_batch_size=args.batch_size,
        max_steps=args.warmup + args.steps,
        learning_rate=args.learning_rate,
        lr_scheduler_type="linear",
        max_length=sum(preference_pairs.max_lengths(args)),
        train_sampling_strategy="sequential",
        bf16=False,
        use_cpu=True,
        seed=args.seed,
        report_to="none",
        logging_strategy="no",
        save_strategy="no",
        disable_tqdm=True,
        dataloader_drop_last=True,
    )


def timed_train(trainer, timer: StepTimer, args) -> float:
    """Runs `trainer.train()`; seconds per optimiser step over the timed steps."""
    trainer.remove_callback(transformers.PrinterCallback)  # keeps stdout to our JSON
    trainer.train()
    if timer.start is None:
        raise RuntimeError("the trainer stopped before the warm-up ended; raise --steps")
    return (timer.end - timer.start) / args.steps


def check_batches(trainer, pairs, args) -> None:
    """TRL's dataloader gives every pair, in order, padded as `padding_stats` counts it: 2B rows
    of the batch's longest `P + C` (the statistics and FLOPs printed are those of its batches)."""
    if len(trainer.train_dataset) != len(pairs):
        raise RuntimeError(f"TRL kept {len(trainer.train_dataset)} of {len(pairs)} pairs")
    expected = [
        (len(rows), rows[0])
        for rows in (
            preference_pairs.row_lengths(b, "trl")
            for b in preference_pairs.batches_of(pairs, args.batch_size)
        )
    ]
    got = [tuple(b["input_ids"].shape) for b in trainer.get_train_dataloader()]
    if got != expected:
        raise RuntimeError(f"TRL's batches are {got}, expected {expected} (in order, padded)")


def bench_reward_model(pairs, tokenizer, args, output_dir: str) -> dict[str, float]:
    dataset = datasets.Dataset.from_dict(
        {
            "chosen_ids": [p["prompt"] + p["chosen"] for p in pairs],
            "rejected_ids": [p["prompt"] + p["rejected"] for p in pairs],
        }
    )
    torch.manual_seed(args.seed)
    model = transformers.LlamaForSequenceClassification(llama_config(args))
    timer = StepTimer(args.warmup)
    trainer = trl.RewardTrainer(
        model=model,
        args=trl.RewardConfig(**common_args(args, output_dir)),
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[timer],
    )
    check_batches(trainer, pairs, args)
    seconds = timed_train(trainer, timer, args)
    return {"seconds_per_step": seconds, "pairs_per_s": args.batch_size / seconds}


def bench_dpo(pairs, tokenizer, args, output_dir: str) -> dict[str, float]:
    dataset = datasets.Dataset.from_dict(
        {key: [as_text(p[key]) for p in pairs] for key in ("prompt", "chosen", "rejected")}
    )
    torch.manual_seed(args.seed)
    model = transformers.LlamaForCausalLM(llama_config(args))
    timer = StepTimer(args.warmup)
    trainer = trl.DPOTrainer(
        model=model,
        ref_model=copy.deepcopy(model),
        args=trl.DPOConfig(**common_args(args, output_dir), beta=args.beta),
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[timer],
    )
    # The same token ids as the rewardjax side: TRL's tokenisation must give back the pairs.
    first = trainer.train_dataset[0]
    expected = [pairs[0][k] for k in ("prompt", "chosen", "rejected")]
    if [first[f"{k}_ids"] for k in ("prompt", "chosen", "rejected")] != expected:
        raise RuntimeError("DPOTrainer tokenised the benchmark pairs into different token ids")
    check_batches(trainer, pairs, args)
    seconds = timed_train(trainer, timer, args)
    return {"seconds_per_step": seconds, "pairs_per_s": args.batch_size / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Prints a human summary on stderr and one JSON object on stdout.",
    )
    preference_pairs.add_arguments(parser)
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)
    logging.getLogger("trl").setLevel(logging.ERROR)
    datasets.disable_progress_bars()

    pairs = preference_pairs.make_pairs(args)
    tokenizer = word_tokenizer(args.vocab_size)
    results: dict[str, object] = {
        "library": "trl",
        "versions": {
            "trl": trl.__version__,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
        },
        "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "lengths": args.lengths,
        "padding": preference_pairs.padding_stats(args, pairs, "trl"),
        "load_average_before": os.getloadavg()[0],
    }
    kinds = {"reward_model": bench_reward_model, "dpo": bench_dpo}
    with tempfile.TemporaryDirectory() as output_dir:
        for name, bench in kinds.items():
            if args.only in (None, name):
                results[name] = bench(pairs, tokenizer, args, output_dir)
    results["load_average_after"] = os.getloadavg()[0]
    padding = results["padding"]
    for name in kinds:
        if name in results:
            results[name]["model_flops_per_step"] = padding["model_flops_per_step"][name]

    print(
        f"TRL {trl.__version__}, transformers {transformers.__version__}, torch {torch.__version__}"
        f" ({torch.get_num_threads()} threads), load average {results['load_average_before']:.1f};"
        f" Llama d_model={args.d_model} layers={args.n_layers} vocab={args.vocab_size};"
        f" {args.batch_size} pairs a step, {args.lengths} lengths, padded to the batch's longest"
        f" row: {padding['rows']:.0f} rows a step, longest {padding['longest_row']},"
        f" padding {padding['padding_fraction']:.1%}",
        file=sys.stderr,
    )
    for name in kinds:
        if name in results:
            r = results[name]
            print(
                f"{name:>12}: {r['pairs_per_s']:8.1f} pairs/s"
                f" ({1e3 * r['seconds_per_step']:.1f} ms/step)",
                file=sys.stderr,
            )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
