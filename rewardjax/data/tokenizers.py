"""Tokenizers: a byte-level default that needs no file, and Hugging Face `tokenizers` from a local
`tokenizer.json`, both with chat-template rendering for message lists.

`encode_example(tokenizer, prompt, response)` returns (prompt ids, response ids):
- both plain strings: the two texts are encoded separately (the response gets the EOS id when the
  tokenizer has one), so the prompt/response boundary is exact;
- otherwise both are turned into messages (a string prompt becomes a user message, a string
  response an assistant message) and rendered with the tokenizer's Jinja chat template: the prompt
  is the rendering of the prompt messages with `add_generation_prompt=True`, the response the rest
  of the rendering of the whole conversation (the template must render the prompt as a prefix of
  the conversation).

Batches always pad with id 0 and mark padding by their masks, whatever the tokenizer's pad token.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import jinja2
import jinja2.sandbox

from rewardjax.data.records import Message, Text

__all__ = [
    "DEFAULT_CHAT_TEMPLATE",
    "ByteTokenizer",
    "HFTokenizer",
    "Tokenizer",
    "check_vocab",
    "encode_example",
]

# A minimal role-tagged template; `eos_token` closes each turn when the tokenizer has one.
DEFAULT_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def _raise(message: str):
    raise jinja2.TemplateError(message)


class Tokenizer:
    """Base: subclasses set `vocab_size`, `eos_token`, `eos_id`, `bos_token`, `chat_template` and
    implement `encode(text) -> list[int]` and `decode(ids) -> str`. `encode` emits ids in
    `[first_id, vocab_size)`."""

    vocab_size: int
    first_id: int = 0
    eos_token: str = ""
    eos_id: int | None = None
    bos_token: str = ""
    chat_template: str = DEFAULT_CHAT_TEMPLATE

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode(self, ids: Sequence[int]) -> str:
        raise NotImplementedError

    def apply_chat_template(
        self, messages: Sequence[Message], *, add_generation_prompt: bool = False
    ) -> str:
        """Renders `messages` with the Jinja chat template (sandboxed, as Hugging Face does)."""
        if not hasattr(self, "_template"):
            env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
            env.globals["raise_exception"] = _raise
            self._template = env.from_string(self.chat_template)
        return self._template.render(
            messages=[{"role": m.role, "content": m.content} for m in messages],
            add_generation_prompt=add_generation_prompt,
            bos_token=self.bos_token,
            eos_token=self.eos_token,
        )


def _as_messages(text: Text, role: str) -> tuple[Message, ...]:
    return (Message(role, text),) if isinstance(text, str) else tuple(text)


def encode_example(
    tokenizer: Tokenizer, prompt: Text, response: Text
) -> tuple[list[int], list[int]]:
    """Returns (prompt ids, response ids) for one prompt and one response (see module docstring)."""
    if isinstance(prompt, str) and isinstance(response, str):
        eos = [] if tokenizer.eos_id is None else [tokenizer.eos_id]
        return tokenizer.encode(prompt), tokenizer.encode(response) + eos
    prompt_msgs = _as_messages(prompt, "user")
    head = tokenizer.apply_chat_template(prompt_msgs, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(prompt_msgs + _as_messages(response, "assistant"))
    if not full.startswith(head):
        raise ValueError(
            "the chat template does not render the prompt (with add_generation_prompt=True) as a "
            "prefix of the whole conversation; pass a template that does"
        )
    return tokenizer.encode(head), tokenizer.encode(full[len(head) :])


def check_vocab(
    tokenizer_vocab_size: int,
    model_vocab_size: int,
    *,
    tokenizer: str,
    field: str = "config.data.tokenizer",
) -> None:
    """Checks that every id the tokenizer emits has a row in the model's embedding table.

    Ids are `0 <= id < tokenizer_vocab_size`; the embedding has `model_vocab_size` rows, so the
    condition is `tokenizer_vocab_size <= model_vocab_size`. An id past the last row is no error
    inside a jitted gather: it reads NaN (or a clamped row) and the loss turns non-finite
    without saying why, so the check runs where the tokenizer and the model first meet.

    Args:
      tokenizer_vocab_size: `Tokenizer.vocab_size` (256 for "byte"; a `tokenizer.json`'s size with
        its added tokens).
      model_vocab_size: the backbone's `vocab_size` (its embedding rows).
      tokenizer: the value of `field` as the user gave it ("byte" or a path), for the message.
      field: the config field that chose the ids; e.g. "config.data.synthetic.vocab_size" (with
        `tokenizer=str(vocab_size)`) for the synthetic task, whose ids are its tokens + 1.

    Raises:
      ValueError: naming the field and its value, both sizes and the fix, when the tokenizer has
        more ids than the model has rows, or when a size is not a positive integer.
    """
    for name, size in (
        ("tokenizer_vocab_size", tokenizer_vocab_size),
        ("model_vocab_size", model_vocab_size),
    ):
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"check_vocab: {name}={size!r} must be a positive int")
    if tokenizer_vocab_size > model_vocab_size:
        raise ValueError(
            f"{field}={tokenizer} gives {tokenizer_vocab_size} token ids, but the model's "
            f"embedding has {model_vocab_size} rows (config.model.vocab_size, or its preset's): "
            f"ids {model_vocab_size}..{tokenizer_vocab_size - 1} would read outside it and turn "
            f"the loss into NaN. Fix: set --config.model.vocab_size={tokenizer_vocab_size} (or "
            "more), or use the tokenizer the model was built for"
        )


class ByteTokenizer(Tokenizer):
    """UTF-8 bytes as ids: byte b -> id b, vocab 256 (the "tiny" backbone preset's vocabulary).

    Id 0 is padding, so text containing a NUL character is rejected. No EOS token: the default chat
    template closes each turn with a newline.
    """

    vocab_size = 256
    first_id = 1  # 0 pads

    def encode(self, text: str) -> list[int]:
        data = text.encode("utf-8")
        if b"\x00" in data:
            raise ValueError("text contains a NUL character; id 0 is reserved for padding")
        return list(data)

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(int(i) for i in ids if i != 0).decode("utf-8", errors="replace")


class HFTokenizer(Tokenizer):
    """A Hugging Face `tokenizers.Tokenizer` from a local `tokenizer.json`.

    Args:
      path: a `tokenizer.json` file, or a folder holding it and optionally `tokenizer_config.json`
        (whose `chat_template`, `eos_token` and `bos_token` are used).
      chat_template: overrides the template; `DEFAULT_CHAT_TEMPLATE` when none is found.
      eos_token: overrides the EOS token (must be in the vocabulary).
    """

    def __init__(
        self, path: str, *, chat_template: str | None = None, eos_token: str | None = None
    ):
        import tokenizers

        folder = path if os.path.isdir(path) else os.path.dirname(path)
        file = os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path
        if not os.path.isfile(file):
            raise FileNotFoundError(
                f"{file}: no such file; the tokenizer (config.data.tokenizer) is 'byte' or the "
                "path of a Hugging Face tokenizer.json, or of a folder holding one"
            )
        try:
            self._tok = tokenizers.Tokenizer.from_file(file)
        except Exception as e:  # the Rust library raises a bare Exception
            raise ValueError(
                f"{file}: not a Hugging Face tokenizer file ({e}); give the tokenizer.json that "
                "`tokenizer.save(path)` or `save_pretrained` writes"
            ) from None
        config: dict[str, Any] = {}
        config_file = os.path.join(folder, "tokenizer_config.json")
        if os.path.exists(config_file):
            with open(config_file, encoding="utf-8") as f:
                config = json.load(f)
        self.chat_template = chat_template or config.get("chat_template") or DEFAULT_CHAT_TEMPLATE
        self.eos_token = eos_token or _token_str(config.get("eos_token")) or ""
        self.bos_token = _token_str(config.get("bos_token")) or ""
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
        if self.eos_token:
            self.eos_id = self._tok.token_to_id(self.eos_token)
            if self.eos_id is None:
                raise ValueError(f"{file}: eos_token {self.eos_token!r} is not in the vocabulary")

    def encode(self, text: str) -> list[int]:
        # Special tokens come from the chat template, not from post-processing.
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=False)


def _token_str(token: Any) -> str | None:
    """tokenizer_config.json stores special tokens as strings or {"content": ...} objects."""
    return token.get("content") if isinstance(token, dict) else token
