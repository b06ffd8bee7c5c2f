"""Language model: a Hugging Face causal LM from a local path, or a Llama built from its config; LoRA.

Also the decoding loop shared by free generation and constrained answers: KV cache, one token per step.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from llaqo_model.errors import ModelError

# transformers renamed the forward argument that carries the KV cache (`past_key_values` → `cache`);
# an unknown name would be swallowed by **kwargs and silently decode without the cache.
CACHE_ARG = "cache" if "cache" in inspect.signature(LlamaForCausalLM.forward).parameters else "past_key_values"


@dataclass
class LMConfig:
    """A local HF model (`path`) or a Llama of the given shape; `train` is 'lora', 'full' or 'frozen'."""

    path: str | None = None
    vocab_size: int = 32000
    hidden_size: int = 4096
    n_layer: int = 32
    n_head: int = 32
    n_kv_head: int = 32
    intermediate_size: int = 11008
    max_positions: int = 4096
    tie_embeddings: bool = False
    train: str = "lora"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    gradient_checkpointing: bool = True  # used on GPU only


def llama_config(config: LMConfig) -> LlamaConfig:
    """The transformers LlamaConfig for a from-config LM."""
    return LlamaConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        num_hidden_layers=config.n_layer,
        num_attention_heads=config.n_head,
        num_key_value_heads=config.n_kv_head,
        intermediate_size=config.intermediate_size,
        max_position_embeddings=config.max_positions,
        tie_word_embeddings=config.tie_embeddings,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )


def build_lm(config: LMConfig, dtype: torch.dtype | None = None) -> nn.Module:
    """Load `config.path` with AutoModelForCausalLM, or build a random Llama of the configured shape."""
    if config.path:
        path = Path(config.path)
        if not (path / "config.json").is_file():
            raise ModelError(f"no Hugging Face model at {path} (config.json missing)")
        lm = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype or torch.float32)
    else:
        lm = LlamaForCausalLM(llama_config(config))
        if dtype is not None:
            lm = lm.to(dtype)
    if config.train != "full":
        lm.requires_grad_(False)
    return lm


def add_lora(lm: nn.Module, config: LMConfig) -> nn.Module:
    """Wrap a frozen LM with trainable LoRA adapters (peft)."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.lora_targets),
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():  # peft still calls transformers' deprecated is_gradient_checkpointing
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(lm, lora)


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """A tokenizer directory (tokenizer.json or a HF model folder)."""
    from transformers import AutoTokenizer

    path = Path(path)
    if not path.is_dir():
        raise ModelError(f"no tokenizer at {path}")
    tok = AutoTokenizer.from_pretrained(str(path))
    if tok.pad_token_id is None:
        tok.pad_token = tok.unk_token or tok.eos_token
    return tok


class Trie:
    """Allowed token sequences (each ending with EOS) for constrained decoding."""

    def __init__(self, sequences: list[list[int]]) -> None:
        self.root: dict = {}
        for seq in sequences:
            node = self.root
            for tok in seq:
                node = node.setdefault(tok, {})

    def allowed(self, prefix: list[int]) -> list[int]:
        """Tokens that may follow `prefix`."""
        node = self.root
        for tok in prefix:
            node = node[tok]
        return list(node)


@dataclass
class Step:
    """One decoding step: the chosen token per row and the step's log-probabilities (B, vocab)."""

    tokens: torch.Tensor
    logprobs: torch.Tensor


def _forward_logits(lm: nn.Module, cache, **inputs: torch.Tensor) -> torch.Tensor:
    """One forward pass with the KV cache; the last position's logits."""
    return lm(use_cache=True, logits_to_keep=1, **{CACHE_ARG: cache}, **inputs).logits[:, -1]


@functools.cache
def compiled_forward():
    """`_forward_logits` compiled once with CUDA graphs (torch.compile 'reduce-overhead')."""
    return torch.compile(_forward_logits, mode="reduce-overhead")


@torch.no_grad()
def decode(
    lm: nn.Module,
    embeds: torch.Tensor,
    attention_mask: torch.Tensor,
    max_new_tokens: int,
    eos_id: int,
    tries: list[Trie | None] | None = None,
    temperature: float = 0.0,
    compiled: bool = False,
) -> Iterator[Step]:
    """Greedy (or sampled) decoding from left-padded input embeddings with a KV cache.

    Rows with a `Trie` only get tokens the trie allows, and stop after their EOS. Yields every step.
    `compiled` (for CUDA): a static KV cache and one CUDA-graph step of fixed shapes, which removes the
    per-token kernel-launch overhead of eager decoding; the first call compiles.
    """
    from transformers import DynamicCache, StaticCache

    b, length = embeds.shape[:2]
    mask = attention_mask.long()
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    emb = lm.get_input_embeddings()
    if compiled:
        cache = StaticCache(config=lm.config, max_cache_len=length + max_new_tokens)
        mask = torch.cat([mask, mask.new_ones(b, max_new_tokens)], dim=1)  # later slots: hidden by causality
        step = compiled_forward()
    else:
        cache, step = DynamicCache(), _forward_logits
    cache_pos = torch.arange(length, device=embeds.device)
    logits = _forward_logits(
        lm, cache, inputs_embeds=embeds, attention_mask=mask, position_ids=positions, cache_position=cache_pos
    )
    done = torch.zeros(b, dtype=torch.bool, device=embeds.device)
    finished = [False] * b  # `done` on the host, so the loop reads it without a device sync
    generated: list[list[int]] = [[] for _ in range(b)]
    next_pos = positions[:, -1:] + 1
    cache_pos = cache_pos[-1:] + 1
    for _ in range(max_new_tokens):
        logits = logits.float()
        if tries is not None:
            allowed = torch.full_like(logits, float("-inf"))
            for i, trie in enumerate(tries):
                if trie is not None and not finished[i]:
                    allowed[i, trie.allowed(generated[i])] = 0.0
                else:
                    allowed[i] = 0.0
            logits = logits + allowed
        logprobs = torch.log_softmax(logits, dim=-1)
        if temperature > 0:
            tokens = torch.multinomial(torch.softmax(logits / temperature, dim=-1), 1)[:, 0]
        else:
            tokens = logits.argmax(-1)
        tokens = torch.where(done, torch.full_like(tokens, eos_id), tokens)
        yield Step(tokens, logprobs)
        for i, token in enumerate(tokens.tolist()):
            generated[i].append(token)
            finished[i] = finished[i] or token == eos_id
        if all(finished):
            return
        done = done | (tokens == eos_id)
        if not compiled:
            mask = torch.cat([mask, mask.new_ones(b, 1)], dim=1)
        logits = step(
            lm,
            cache,
            inputs_embeds=emb(tokens[:, None]),
            attention_mask=mask,
            position_ids=next_pos,
            cache_position=cache_pos,
        )
        next_pos = next_pos + 1
        cache_pos = cache_pos + 1
