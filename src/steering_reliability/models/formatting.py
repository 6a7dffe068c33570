"""The one prompt-formatting function: chat template where there is one, plain otherwise."""

from __future__ import annotations

from typing import Any

PLAIN_TEMPLATE = "User: {prompt}\nAssistant:"


def prompt_format(tokenizer: Any) -> str:
    """'chat' if the tokenizer has a chat template, else 'plain'."""
    return "chat" if getattr(tokenizer, "chat_template", None) else "plain"


def format_prompt(
    tokenizer: Any, prompt: str, *, system_prompt: str | None = None, fmt: str | None = None
) -> str:
    """The exact text the model sees before its answer.

    system_prompt None keeps the chat template's own default (SmolLM2 inserts one); "" means none
    where the template allows it.
    """
    fmt = fmt or prompt_format(tokenizer)
    if fmt == "plain":
        text = PLAIN_TEMPLATE.format(prompt=prompt)
        return f"{system_prompt}\n\n{text}" if system_prompt else text
    messages: list[dict[str, str]] = []
    if system_prompt is not None:
        messages.append({"role": "system", "content": system_prompt})
    messages.append({"role": "user", "content": prompt})
    out = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return str(out)


def encode_prompt(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a formatted prompt; BOS is added only where the text does not carry it."""
    bos = getattr(tokenizer, "bos_token", None)
    return list(tokenizer(text, add_special_tokens=not (bos and text.startswith(bos))).input_ids)


# Two user messages that share no final characters: what their formatted prompts share at the
# end is what the template adds after any message.
_PROBES = ("Name three colours", "How tall is a giraffe?")


def post_instruction_positions(
    tokenizer: Any, *, system_prompt: str | None = None
) -> tuple[int, ...]:
    """Positions (negative, from the end of a formatted prompt) of the tokens the prompt format
    puts after the user's message (Arditi et al.'s post-instruction tokens): the common token
    suffix of two prompts formatted with different messages. Derived from the template, so it
    holds for any chat model (SmolLM2: `<|im_end|>`, newline, `<|im_start|>`, `assistant`, newline)."""
    a, b = (encode_prompt(tokenizer, format_prompt(tokenizer, p, system_prompt=system_prompt))
            for p in _PROBES)  # fmt: skip
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return tuple(range(-n, 0))
