"""A Llama-architecture model with random weights and a tokenizer built here: serving energy without downloads.

Energy of inference depends on the model's shape (layers, widths, vocabulary) and on how many
tokens it produces, not on what its weights say, so a randomly initialised model of a real shape
prices a deployment before its weights are at hand. The tokenizer is word-level, learnt from the
prompt set and padded with filler words to the vocabulary size; the chat template uses plain words
only, so every generated token decodes to visible text and streams as content.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from green_mlops.extras import require

#: Shapes of Llama 3.2 1B and 3B (tied embeddings, 128,256-token vocabulary), and a tiny one for tests.
SHAPES = {
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=0, max_position_embeddings=1024),
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128256, max_position_embeddings=8192),
    "3b": dict(hidden_size=3072, intermediate_size=8192, num_hidden_layers=28, num_attention_heads=24,
               num_key_value_heads=8, vocab_size=128256, max_position_embeddings=8192),
}
SPECIAL = {"unk_token": "<unk>", "pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>"}
CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] + ' : ' + m['content'] + ' . ' }}{% endfor %}"
                 "{% if add_generation_prompt %}{{ 'assistant :' }}{% endif %}")
TEMPLATE_WORDS = "system : user : assistant : ."


@dataclass(frozen=True)
class BuiltModel:
    """Where the model was saved, and its size."""

    path: Path
    parameters: int
    vocab_size: int
    dtype: str


def build_tokenizer(texts: Iterable[str], vocab_size: int = 0):
    """A word-level fast tokenizer learnt from ``texts``, padded with filler words to ``vocab_size`` (0: no padding)."""
    require("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    learner = Tokenizer(models.WordLevel(unk_token=SPECIAL["unk_token"]))
    learner.pre_tokenizer = pre_tokenizers.Whitespace()
    learner.train_from_iterator([TEMPLATE_WORDS, *texts],
                                trainers.WordLevelTrainer(special_tokens=list(SPECIAL.values())))
    vocab = dict(learner.get_vocab())
    if vocab_size and len(vocab) > vocab_size:
        keep = sorted(vocab, key=vocab.__getitem__)[:vocab_size]
        vocab = {w: i for i, w in enumerate(keep)}
    filler = 0
    while len(vocab) < vocab_size:
        word = f"w{filler}"
        filler += 1
        if word not in vocab:
            vocab[word] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=SPECIAL["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(list(SPECIAL.values()))
    return PreTrainedTokenizerFast(tokenizer_object=tok, chat_template=CHAT_TEMPLATE, **SPECIAL)


def build_random_llama(path: str | Path, shape: str = "tiny", *, texts: Iterable[str] | None = None,
                       dtype: str = "float32", device: str = "cpu", seed: int = 0, **overrides: int) -> BuiltModel:
    """Save a randomly initialised ``LlamaForCausalLM`` of a named shape and its tokenizer to ``path``.

    ``texts`` teach the tokenizer real words (default: the shipped prompt set); ``overrides`` change
    any field of the shape (e.g. ``num_hidden_layers=4``). Build on the GPU for large shapes: random
    initialisation of billions of parameters is minutes on a CPU and seconds on a GPU.
    """
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; choose one of {', '.join(SHAPES)}")
    import torch

    require("transformers")
    from transformers import LlamaConfig, LlamaForCausalLM

    if texts is None:
        from green_mlops.genai.prompts import load_prompts

        texts = [m[1] for p in load_prompts(None).prompts for m in p.messages]
    fields = {**SHAPES[shape], **overrides}
    tokenizer = build_tokenizer([_spaced(t) for t in texts], fields["vocab_size"])
    fields["vocab_size"] = len(tokenizer)
    config = LlamaConfig(**fields, tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch_dtype = getattr(torch, dtype)
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch_dtype)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    model.generation_config = _greedy(model.generation_config, tokenizer)
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    parameters = sum(p.numel() for p in model.parameters())
    del model
    return BuiltModel(out, parameters, len(tokenizer), dtype)


def _greedy(config, tokenizer):
    """Greedy decoding by default, with the tokenizer's special ids (the paper's temperature 0)."""
    config.do_sample = False
    config.eos_token_id = tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    config.bos_token_id = tokenizer.bos_token_id
    for name in ("temperature", "top_p", "top_k"):
        if hasattr(config, name):
            setattr(config, name, None)
    return config


def _spaced(text: str) -> str:
    return re.sub(r"\s+", " ", text)
