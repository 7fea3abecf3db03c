"""The workload's tokenizer: byte-level BPE trained here (``tokenizers``) on D_r's text only.

Training it on D_r keeps the forget set out of the vocabulary as well as out of the oracle:
the original and the oracle share one tokenizer, and no merge rule was learned from D_f.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from raysweep.models.lm import IGNORE_INDEX

__all__ = ["train_tokenizer", "load_tokenizer", "vocab_size", "encode_passages", "PAD", "BOS"]

PAD, BOS = "<pad>", "<s>"


def train_tokenizer(texts: Sequence[str], vocab_size: int) -> str:
    """A byte-level BPE tokenizer of ``vocab_size`` tokens trained on ``texts``, serialised
    (``Tokenizer.to_str()``: the workload cache stores it beside the weights). Id 0 is
    ``<pad>``, id 1 is ``<s>``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, BOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(list(texts), trainer=trainer)
    return str(tok.to_str())


def load_tokenizer(serialised: str) -> Any:
    """The ``tokenizers.Tokenizer`` of :func:`train_tokenizer`'s output."""
    from tokenizers import Tokenizer

    return Tokenizer.from_str(serialised)


def vocab_size(serialised: str) -> int:
    """Ids the tokenizer can emit (a small corpus may give fewer than the size asked for)."""
    return int(load_tokenizer(serialised).get_vocab_size())


def encode_passages(serialised: str, texts: Sequence[str],
                    context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs, targets)``, both ``(N, context)`` int64: each passage as ``<s>`` + its tokens,
    cut to ``context + 1`` ids; inputs are ids ``[:-1]``, targets ids ``[1:]`` with
    :data:`~raysweep.models.lm.IGNORE_INDEX` where a short passage is padded."""
    tok = load_tokenizer(serialised)
    bos, pad = tok.token_to_id(BOS), tok.token_to_id(PAD)
    ids = torch.full((len(texts), context + 1), pad, dtype=torch.long)
    real = torch.zeros((len(texts), context + 1), dtype=torch.bool)
    for i, enc in enumerate(tok.encode_batch(list(texts))):
        row = [bos, *enc.ids][: context + 1]
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        real[i, : len(row)] = True
    targets = ids[:, 1:].clone()
    targets[~real[:, 1:]] = IGNORE_INDEX
    return ids[:, :-1].contiguous(), targets
