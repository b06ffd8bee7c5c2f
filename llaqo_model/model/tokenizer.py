"""A small byte-level BPE tokenizer trained on the corpus text (questions, answers, report renderings)."""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from llaqo_model.analysis.report import RUBRIC_KEYS, TECHNIQUES, IssueKind
from llaqo_model.model.prompts import canonical_questions, prompt_parts

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]  # ids 0..3; the Llama config uses pad 0, bos 1, eos 2


def seed_texts() -> list[str]:
    """Text every tokenizer must cover well: prompts, option labels, report vocabulary."""
    texts = list(canonical_questions().values())
    texts += [prompt_parts("q", "r")[0] + prompt_parts("q", "r")[1]]
    texts += [k.replace("_", " ") for k in RUBRIC_KEYS] + list(TECHNIQUES) + [str(k) for k in IssueKind]
    texts += [f"bar {i}: {k}" for i in range(1, 41) for k in IssueKind]
    return texts


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """Train byte-level BPE (every digit its own token, technique labels whole tokens) on `texts`."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(seed_texts()) + list(texts), trainer=trainer)
    tok.add_tokens(list(TECHNIQUES))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
