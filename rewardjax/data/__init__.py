"""Preference data: record schemas, readers, layout adapters, tokenizers, grain pipelines and the
synthetic gold-reward Markov task.

Typical use::

    records, report = data.load_records("prefs.jsonl", layout="hh", on_error="skip")
    encoded = data.encode_records(records, data.ByteTokenizer(), max_length=512)
    it = iter(data.batches(encoded, global_batch_size=32, seed=0))
    batch = next(it)          # dict of numpy arrays, keys data.BATCH_KEYS["pairwise"]
    state = it.get_state()    # save with the checkpoint; it.set_state(state) resumes
"""

from rewardjax.data import benchmarks, packing, steps, synthetic
from rewardjax.data.adapters import ADAPTERS, HELPSTEER2_ATTRIBUTES, adapt
from rewardjax.data.conversions import convert
from rewardjax.data.packing import PACKABLE_KINDS, Packing, PackingPlan, is_packed
from rewardjax.data.pipeline import (
    BATCH_KEYS,
    EncodedDataset,
    EncodeStats,
    batches,
    collate,
    encode_records,
    pack_sft,
)
from rewardjax.data.readers import FORMATS, LoadReport, load_records, read_rows
from rewardjax.data.records import (
    RECORD_KINDS,
    FieldError,
    Message,
    PairwiseRecord,
    RankedRecord,
    RatingRecord,
    Record,
    RecordError,
    SFTRecord,
    Text,
    UnpairedRecord,
    parse_record,
)
from rewardjax.data.steps import (
    LABEL_KINDS,
    STEP_LAYOUTS,
    StepLoadReport,
    StepRecord,
    load_step_records,
    parse_step_record,
)
from rewardjax.data.synthetic import MarkovTask, make_markov_task
from rewardjax.data.tokenizers import (
    DEFAULT_CHAT_TEMPLATE,
    ByteTokenizer,
    HFTokenizer,
    Tokenizer,
    check_vocab,
    encode_example,
)

__all__ = [
    "ADAPTERS",
    "BATCH_KEYS",
    "DEFAULT_CHAT_TEMPLATE",
    "FORMATS",
    "HELPSTEER2_ATTRIBUTES",
    "LABEL_KINDS",
    "PACKABLE_KINDS",
    "RECORD_KINDS",
    "STEP_LAYOUTS",
    "ByteTokenizer",
    "EncodeStats",
    "EncodedDataset",
    "FieldError",
    "HFTokenizer",
    "LoadReport",
    "MarkovTask",
    "Message",
    "Packing",
    "PackingPlan",
    "PairwiseRecord",
    "RankedRecord",
    "RatingRecord",
    "Record",
    "RecordError",
    "SFTRecord",
    "StepLoadReport",
    "StepRecord",
    "Text",
    "Tokenizer",
    "UnpairedRecord",
    "adapt",
    "batches",
    "benchmarks",
    "check_vocab",
    "collate",
    "convert",
    "encode_example",
    "encode_records",
    "is_packed",
    "load_records",
    "load_step_records",
    "make_markov_task",
    "pack_sft",
    "packing",
    "parse_record",
    "parse_step_record",
    "read_rows",
    "steps",
    "synthetic",
]
