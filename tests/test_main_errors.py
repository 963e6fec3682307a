"""Bad input through `python -m rewardjax.main`: one `error: ...` line on stderr, no traceback.

Four subprocesses (each pays the JAX import): a record file with a non-UTF-8 line, a config value
that `run` rejects, a misspelt config override (an absl/ml_collections flag-parsing error), and a
resume from a work directory whose checkpoint is garbage. The rest is checked in-process.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from absl import flags
from absl.testing import flagsaver

REPO = Path(__file__).resolve().parents[1]


def _error_line(env, workdir, *overrides):
    """Runs the reward-model smoke config with `overrides`; returns stderr's last line after
    checking that the run failed cleanly."""
    command = [sys.executable, "-m", "rewardjax.main", "--config=configs/reward_model.py:smoke"]
    command += [f"--workdir={workdir}", *overrides]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), result.stderr
    return last


def test_malformed_record_names_file_and_line(env, tmp_path):
    path = tmp_path / "prefs.jsonl"
    good = json.dumps({"prompt": "p1", "chosen": "a1", "rejected": "b1"}).encode()
    path.write_bytes(good + b'\n{"prompt": "p2", "chosen": "caf\xe9", "rejected": "b2"}\n')
    files = ["--config.data.source=files", f"--config.data.train_path={path}"]
    line = _error_line(env, tmp_path / "w", *files)
    assert line.startswith(f"error: {path}: line 2: field '<utf-8>': not valid UTF-8"), line
    assert "Fix:" in line and "--traceback" not in line  # the message says it all


def test_bad_config_value_names_the_field(env, tmp_path):
    line = _error_line(env, tmp_path / "w", "--config.train.num_steps=0")
    assert line == "error: config.train.num_steps=0 must be >= 1."


def test_misspelt_override_names_the_flag_and_the_field(env, tmp_path):
    line = _error_line(env, tmp_path / "w", "--config.train.num_stepz=5")
    assert line.startswith("error: --config.train.num_stepz: config.train has no field"), line
    assert '"num_steps"' in line  # ml_collections' did-you-mean
    assert not (tmp_path / "w").exists()  # stopped before anything ran


def test_garbage_checkpoint_is_named(env, tmp_path):
    step = tmp_path / "w" / "checkpoints" / "3"
    for name in ("_CHECKPOINT_METADATA", "state/_METADATA", "data/process_0-of-1.json"):
        (step / name).parent.mkdir(parents=True, exist_ok=True)
        (step / name).write_text("garbage")
    line = _error_line(env, tmp_path / "w", "--config.eval.enabled=False")
    assert line.startswith(f"error: cannot read the checkpoint {step} ("), line
    assert f"Fix: delete {step}" in line and "--traceback" in line


@pytest.fixture
def main_lib():
    from rewardjax import main

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    return main


def _raised(fn):
    try:
        fn()
    except Exception as e:  # the exception under test, with its traceback
        return e
    raise AssertionError("nothing raised")


def test_error_line_keeps_tracebacks_of_bugs_and_types_library_errors(main_lib, tmp_path):
    from rewardjax import data

    path = tmp_path / "m.jsonl"
    path.write_text('{"prompt": "p", "chosen": "a"}\n')
    record_error = _raised(lambda: data.load_records(str(path)))
    assert main_lib._error_line(record_error) == f"error: {record_error}"
    # A library's ValueError says what but not where: its type, and --traceback for the place.
    library = _raised(lambda: json.loads("{oops"))
    assert main_lib._error_line(library).startswith("error: JSONDecodeError: Expecting property")
    assert main_lib._error_line(library).endswith("(--traceback shows where it was raised)")
    assert main_lib._error_line(_raised(lambda: {}["key"])) is None  # a bug: traceback kept
    multi = _raised(lambda: data.check_vocab(300, 256, tokenizer="a\nb"))
    assert "\n" not in main_lib._error_line(multi)


def test_traceback_flag_reraises(main_lib):
    # --local_device_ids without a multi-host run: a usage error, raised before anything runs.
    with flagsaver.flagsaver(local_device_ids=["0"]):
        flags.FLAGS["config"].parse(f"{REPO / 'configs' / 'reward_model.py'}:smoke")
        with pytest.raises(SystemExit, match=r"^error: --local_device_ids only applies"):
            main_lib.main(["main"])
        with flagsaver.flagsaver(traceback=True):
            with pytest.raises(Exception, match="--local_device_ids only applies"):
                main_lib.main(["main"])
    assert main_lib._wants_traceback(["main", "--traceback", "--config.x=1"])
    assert not main_lib._wants_traceback(["main", "--traceback", "--notraceback"])


def test_a_config_file_that_does_not_exist_is_named(main_lib, tmp_path):
    missing = str(tmp_path / "no_such_config.py")
    with flagsaver.flagsaver():
        flags.FLAGS["config"].parse(missing)  # ml_collections defers the error to the first read
        with pytest.raises(SystemExit) as info:
            main_lib.main(["main"])
    line = str(info.value.code)
    assert line.startswith("error: --config: cannot load the config file") and missing in line
    assert "--traceback" not in line
