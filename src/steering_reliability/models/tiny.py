"""A tiny randomly initialised Llama-family model with a byte-level tokenizer, built in code.

For fast tests of hook mechanics and generation: same architecture family as the default
model, seconds to build, no files or network.
"""

from __future__ import annotations

from typing import Any

from steering_reliability.models.loader import LoadedModel, ModelInfo, boot_bridge

TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_tokenizer() -> Any:
    """Byte-level tokenizer: 256 byte tokens + specials; any text round-trips."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    vocab = {s: i for i, s in enumerate(specials)}
    for ch in sorted(alphabet):
        vocab[ch] = len(vocab)
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=specials,
    )
    tok.chat_template = TINY_CHAT_TEMPLATE
    return tok


def tiny_model(
    *, n_layers: int = 4, d_model: int = 64, seed: int = 0, chat: bool = True, device: str = "cpu"
) -> LoadedModel:
    """A LoadedModel around a random LlamaForCausalLM (same hook names as the default model),
    on `device` (the weights are drawn on the CPU, so a seed gives the same model anywhere)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_tokenizer()
    if not chat:
        tok.chat_template = None
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=d_model,
        intermediate_size=2 * d_model,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    cfg.architectures = ["LlamaForCausalLM"]
    torch.manual_seed(seed)
    cfg._attn_implementation = "sdpa"  # as models.load asks for
    model = LlamaForCausalLM(cfg).eval().to(device)
    model.requires_grad_(False)
    bridge = boot_bridge("tiny-llama", model, tok)
    info = ModelInfo(
        name="tiny-llama",
        source="code:tiny",
        n_layers=n_layers,
        d_model=d_model,
        n_ctx=512,
        vocab_size=len(tok),
        weights_sha256=f"tiny-seed{seed}-{n_layers}x{d_model}",
        prompt_format="chat" if chat else "plain",
        load_seconds=0.0,
    )
    return LoadedModel(bridge=bridge, hf_model=model, tokenizer=tok, info=info)
