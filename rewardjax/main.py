"""Entry point: `python -m rewardjax.main --config=configs/<name>.py[:arg] --workdir=DIR`.

Overrides: `--config.optimizer.learning_rate=3e-4` (the config is locked: a misspelt field fails).
The work directory holds checkpoints, metrics (JSONL + TensorBoard) and the resolved config;
rerunning with the same `--workdir` resumes from the latest checkpoint.

Multi-host: start the same command once per process, with the process flags. Each process reads
its shard of the data, batches are assembled across processes, checkpoints are written
collectively into the shared `--workdir`, and process 0 alone writes metrics and reports. E.g.
two processes on this machine (CPU, gloo collectives), in two shells or with `&`:

    python -m rewardjax.main --config=configs/reward_model.py:smoke --workdir=/tmp/rm \\
        --coordinator_address=localhost:12345 --num_processes=2 --process_id=0
    python -m rewardjax.main --config=configs/reward_model.py:smoke --workdir=/tmp/rm \\
        --coordinator_address=localhost:12345 --num_processes=2 --process_id=1

On a cluster that JAX can read (SLURM, Open MPI, TPU pods, Kubernetes), `--auto_distributed`
takes the process layout from the environment instead.

Errors in what the user gave (a malformed record, a bad flag or config value, an unreadable
checkpoint, a tokenizer that does not fit the model) end the run with one line on stderr,
`error: <what, where, and the fix>`, and exit status 1; `--traceback` shows the Python traceback
instead. Other exceptions (bugs) keep their traceback.
"""

from __future__ import annotations

import logging as std_logging
import os
import sys
import types

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from rewardjax import parallel, train

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (configs/<name>.py[:arg]).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and reports.")
flags.mark_flags_as_required(["config", "workdir"])

_PROCESS_FLAGS = ("coordinator_address", "num_processes", "process_id")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address",
    None,
    "Multi-host: host:port of process 0's coordinator, the same on every process "
    "(e.g. localhost:12345). Set it with --num_processes and --process_id.",
)
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "Multi-host: how many processes take part (e.g. 2)."
)
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "Multi-host: this process, 0 .. num_processes - 1 (0 is the primary)."
)
_LOCAL_DEVICE_IDS = flags.DEFINE_list(
    "local_device_ids",
    None,
    "Multi-host: ids of this host's devices to use (e.g. 0,1); default all.",
)
_AUTO_DISTRIBUTED = flags.DEFINE_bool(
    "auto_distributed",
    False,
    "Multi-host: let jax.distributed.initialize read the process layout from the cluster "
    "(SLURM, Open MPI, TPU pods, Kubernetes); process flags that are set override it.",
)
_CPU_DEVICES = flags.DEFINE_integer(
    "cpu_devices",
    None,
    "CPU only: how many XLA devices to make of this machine's CPU (jax_num_cpu_devices); the "
    "config's mesh splits batches over them. XLA:CPU leaves cores idle between small ops, so a "
    "data-parallel split runs steps faster (2 devices on a 2-core machine: 1.1-1.8x for "
    "the benchmark reward-model step). Batch sizes must divide evenly.",
    lower_bound=1,
)
_TRACEBACK = flags.DEFINE_bool(
    "traceback",
    False,
    "On an error in the input (a record, a flag or config value, a checkpoint), raise with the "
    "Python traceback instead of printing one `error: ...` line.",
)
_EXAMPLE = (
    "For two processes on this machine run, once with --process_id=0 and once with "
    "--process_id=1: --coordinator_address=localhost:12345 --num_processes=2 --process_id=0"
)

# The evaluation metrics on the console's summary line (pairs, gold reward, likelihood), with every
# rating's `mse/<name>`.
_SUMMARY_KEYS = ("accuracy", "gold_pair_accuracy", "gold_spearman", "nll")

# Libraries whose INFO records (one per checkpoint file written) would drown the run's own log.
_QUIET = ("/orbax/", "/grain/")


class _QuietLibraries(std_logging.Filter):
    def filter(self, record: std_logging.LogRecord) -> bool:
        return record.levelno >= std_logging.WARNING or not any(
            part in record.pathname for part in _QUIET
        )


def _distributed_args() -> dict | None:
    """`initialize_distributed` keyword arguments from the process flags; None for one process."""
    given = {name: flags.FLAGS[name].value for name in _PROCESS_FLAGS}
    given = {name: value for name, value in given.items() if value is not None}
    device_ids = _LOCAL_DEVICE_IDS.value
    if not given and not _AUTO_DISTRIBUTED.value:
        if device_ids is not None:
            raise app.UsageError(
                "--local_device_ids only applies to a multi-host run; set --coordinator_address, "
                f"--num_processes and --process_id too (or --auto_distributed). {_EXAMPLE}"
            )
        return None
    missing = [f"--{name}" for name in _PROCESS_FLAGS if name not in given]
    if missing and not _AUTO_DISTRIBUTED.value:
        raise app.UsageError(
            f"{', '.join(missing)} missing: --coordinator_address, --num_processes and "
            f"--process_id go together (or pass --auto_distributed on a cluster JAX can "
            f"detect). {_EXAMPLE}"
        )
    num, pid = given.get("num_processes"), given.get("process_id")
    if num is not None and num < 1:
        raise app.UsageError(f"--num_processes={num} must be >= 1.")
    if pid is not None and (pid < 0 or (num is not None and pid >= num)):
        raise app.UsageError(
            f"--process_id={pid} must be in [0, --num_processes={num}); number the processes "
            "0, 1, ..., num_processes - 1."
        )
    address = given.get("coordinator_address")
    if address is not None and not address.rpartition(":")[2].isdigit():
        raise app.UsageError(
            f"--coordinator_address={address!r} must be host:port, e.g. localhost:12345."
        )
    try:
        ids = None if device_ids is None else [int(i) for i in device_ids]
    except ValueError:
        raise app.UsageError(
            f"--local_device_ids={','.join(device_ids)} must be comma-separated integers, e.g. 0,1."
        ) from None
    return dict(given, local_device_ids=ids)


def _frames(tb: types.TracebackType | None) -> list[types.FrameType]:
    """The frames of a traceback, outermost first (the last is where the exception was raised)."""
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    return frames


def _in_rewardjax(frame: types.FrameType) -> bool:
    return os.path.dirname(os.path.abspath(__file__)) in os.path.abspath(frame.f_code.co_filename)


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


def _error_line(error: BaseException) -> str | None:
    """`error: ...` for an error in the user's input (records, configs, checkpoints, files);
    None for anything else (a bug), which keeps its traceback.

    A ValueError (RecordError, ...) or OSError that rewardjax's own checks raise already says
    what, where and how to fix it: its message is the line. One a library raises is prefixed
    with its type, and points to `--traceback` (a checkpoint that cannot be read is a
    `CheckpointError` of ours, naming the step folder and the fix).
    """
    frames = _frames(error.__traceback__)
    # Raised by a check of ours (not an OSError of the operating system, which carries errno).
    ours = bool(frames) and _in_rewardjax(frames[-1]) and getattr(error, "errno", None) is None
    message = _one_line(str(error)) or type(error).__name__
    if isinstance(error, app.UsageError):
        return f"error: {message}"
    if not isinstance(error, ValueError | OSError):
        return None
    if ours:
        return f"error: {message}"
    return f"error: {type(error).__name__}: {message} (--traceback shows where it was raised)"


def _wants_traceback(argv: list[str]) -> bool:
    """--traceback from argv, before (or without) the flags being parsed."""
    wanted = False
    for arg in argv[1:]:
        if arg in ("--traceback", "--traceback=true", "--traceback=True", "--traceback=1"):
            wanted = True
        elif arg in ("--notraceback", "--traceback=false", "--traceback=False", "--traceback=0"):
            wanted = False
    return wanted


def _override_error_line(error: Exception, argv: list[str]) -> str:
    """An override of a field the (locked) config does not have: name the flag and the field."""
    detail = error
    while detail.args and isinstance(detail.args[0], BaseException):
        detail = detail.args[0]
    first, _, hint = str(detail.args[0] if detail.args else detail).partition("\n")
    key = first.strip("'\"")
    overrides = [a.partition("=")[0] for a in argv[1:] if a.startswith("--config.")]
    flag = next((o for o in overrides if key in o[len("--config.") :].split(".")), None)
    if flag is None:
        return (
            f"error: a --config.* override names no field of the config ({_one_line(str(detail))})."
        )
    path = flag[len("--") :].split(".")
    parent = ".".join(path[: path.index(key)])
    hint = f" {hint.strip()}" if hint.strip() else ""
    return (
        f"error: {flag}: {parent} has no field {key!r}.{hint} The config is locked: an override "
        "must name one of the fields its config file defines."
    )


def _parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with errors as one `error: ...` line (absl prints a traceback for a
    misspelt config override and for an exception in the config file's get_config)."""
    try:
        return flags.FLAGS(argv)
    except (flags.Error, AttributeError, KeyError) as e:
        if _wants_traceback(argv):
            raise
        if not isinstance(e, flags.Error):  # ml_collections: a field the config does not have
            sys.exit(_override_error_line(e, argv))
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        if any(line.startswith("Traceback") for line in lines):  # get_config raised: keep its
            message = f"{lines[0]} {lines[-1]}"  # first line (the flag) and the exception line
        else:
            message = " ".join(lines)
        sys.exit(f"error: {message} (--helpshort lists the flags)")


def _eval_line(metrics: dict[str, float]) -> str:
    """The console's evaluation summary: the headline metrics the run has, else its first few."""
    keys = [k for k in _SUMMARY_KEYS if k in metrics]
    keys += sorted(k for k in metrics if k.startswith("mse/"))
    keys = keys or sorted(metrics)[:4]
    return "Eval: " + ", ".join(f"{k} {metrics[k]:.4f}" for k in keys)


def main(argv: list[str]) -> None:
    try:
        _main(argv)
    except Exception as e:
        line = None if _TRACEBACK.value else _error_line(e)
        if line is None:
            raise
        sys.exit(line)


def _main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    config = _CONFIG.value
    try:  # ml_collections reports a config file it could not load at the first field read
        config.keys()
    except OSError as e:
        raise app.UsageError(f"--config: cannot load the config file ({_one_line(e)})") from None
    distributed = _distributed_args()
    if _CPU_DEVICES.value is not None:  # before anything touches the devices
        jax.config.update("jax_num_cpu_devices", _CPU_DEVICES.value)
    if distributed is not None:
        parallel.initialize_distributed(**distributed)
    logging.get_absl_handler().addFilter(_QuietLibraries())
    logging.info("Config:\n%s", config)
    try:
        summary = train.run(config, _WORKDIR.value)
    except train.NonFiniteLossError as e:
        sys.exit(f"error: {e}")
    except train.Preempted as e:
        logging.warning("%s", e)
        sys.exit(143)
    if jax.process_index() != 0:  # the primary reports for everyone
        return
    print(f"Finished {config.task}: step {summary['step']}, work directory {summary['workdir']}")
    if "eval" in summary:
        print(_eval_line(summary["eval"]))
    if "report" in summary:
        print(f"Report: {summary['report']}")


if __name__ == "__main__":
    app.run(main, flags_parser=_parse_flags)
