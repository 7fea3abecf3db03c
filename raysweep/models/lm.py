"""Causal language models for text-generation workloads: a small GPT-2 built from a config.

No pretrained causal LM ships in a package here, so ``gpt-tiny`` is ``transformers``'
``GPT2LMHeadModel`` at random initialisation, trained by the workload until it memorises its
training passages (:mod:`raysweep.lm.workload`).

Layout. The forward pass takes ``(B, T)`` token ids and returns logits as ``(B, V, T)``, the
vocabulary on dimension 1. That is the layout ``torch.nn.functional.cross_entropy`` takes for
a sequence of targets ``(B, T)``, so the training loop, the retrain oracle, the sample-pass
counter and every loss ``cross_entropy(model(x), y)`` compute the next-token loss with no code
of their own; targets of ``-100`` (padding) are ignored as cross-entropy's ``ignore_index``.
Right padding needs no attention mask: attention is causal, so a pad never reaches a real token.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn

from raysweep.models._factory import register_model

__all__ = ["CausalLM", "IGNORE_INDEX"]

#: The target id that every loss ignores (padding); ``cross_entropy``'s default.
IGNORE_INDEX = -100


class CausalLM(nn.Module):
    """A Hugging Face causal LM whose forward returns ``(B, V, T)`` logits (see the module)."""

    is_lm = True

    def __init__(self, lm: nn.Module, context: int) -> None:
        super().__init__()
        self.lm = lm
        self.context = context

    @property
    def vocab_size(self) -> int:
        return int(cast(Any, self.lm).config.vocab_size)

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        """``(B, T, V)`` logits, the usual layout (generation, per-token statistics)."""
        return cast(Any, self.lm)(input_ids=ids).logits

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.logits(ids).transpose(1, 2)

    def blocks(self) -> list[nn.Module]:
        """Input to output: embeddings, each transformer block, the final norm (CF-k, EU-k)."""
        body = cast(Any, self.lm).transformer
        return [body.wte, *body.h, body.ln_f]


@register_model("gpt-tiny", kind="lm", description="GPT-2 architecture from a config, random "
                "init (default 2 layers x 128 wide, 4 heads); a text-generation workload "
                "trains it until it memorises")
def gpt_tiny(num_classes: int, in_chans: int, img_size: int, pretrained: bool | str,
             n_layer: int = 2, n_embd: int = 128, n_head: int = 4, context: int = 64,
             dropout: float = 0.0) -> nn.Module:
    """``num_classes`` is the vocabulary size (the workload's tokenizer sets it)."""
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging as hf_logging

    # Right padding needs no attention mask here (causal attention; see the module docstring):
    # the library's advice to pass one, repeated on every call, is noise.
    hf_logging.set_verbosity_error()

    if pretrained:
        raise ValueError("gpt-tiny has no pretrained weights (it is trained by its workload); "
                         "set model.pretrained: false")
    for name, value, least in (("n_layer", n_layer, 1), ("n_embd", n_embd, 8),
                               ("n_head", n_head, 1), ("context", context, 2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    if n_embd % n_head:
        raise ValueError(f"n_embd ({n_embd}) must be a multiple of n_head ({n_head})")
    config = GPT2Config(vocab_size=num_classes, n_positions=context, n_embd=n_embd,
                        n_layer=n_layer, n_head=n_head, resid_pdrop=dropout,
                        embd_pdrop=dropout, attn_pdrop=dropout, tie_word_embeddings=True,
                        bos_token_id=0, eos_token_id=0, pad_token_id=0)
    return CausalLM(GPT2LMHeadModel(config), context)
