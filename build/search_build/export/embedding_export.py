"""Export a sentence-transformers checkpoint as one graph: encoder + pooling + L2 normalisation.

Pooling lives inside the graph so an engine returns [N, D] sentence vectors rather than
[N, L, D] token vectors: on a GPU that is ~L times less data back to the host per request.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModel

from search_backends.contracts.query_embedding import SENTENCE_EMBEDDING, TOKEN_IDS

from search_build.export.onnx_export import export_dynamo
from search_build.export.sentence_checkpoint import SentenceCheckpoint, mean_pool

INPUT_NAMES = TOKEN_IDS
OUTPUT_NAMES = (SENTENCE_EMBEDDING,)


class PooledEncoder(torch.nn.Module):
    def __init__(self, encoder: torch.nn.Module, pooling: str, normalize: bool):
        super().__init__()
        self.encoder, self.pooling, self.normalize = encoder, pooling, normalize

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        tokens = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=torch.zeros_like(input_ids)
        ).last_hidden_state
        if self.pooling == "mean":
            pooled = mean_pool(tokens, attention_mask)
        elif self.pooling == "cls":
            pooled = tokens[:, 0]
        else:  # max over kept tokens
            pooled = tokens.masked_fill(attention_mask.unsqueeze(-1) == 0, -1e9).max(1).values
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=-1)
        return pooled


def load_pooled_encoder(checkpoint: SentenceCheckpoint) -> PooledEncoder:
    encoder = AutoModel.from_pretrained(checkpoint.transformer_dir, attn_implementation="eager", use_safetensors=True)
    return PooledEncoder(encoder, checkpoint.pooling, checkpoint.normalize).eval()


def export_embedding_encoder(checkpoint_dir: str | Path, out_path: str | Path) -> Path:
    checkpoint = SentenceCheckpoint.load(checkpoint_dir)
    module = load_pooled_encoder(checkpoint)
    ids = torch.randint(1000, 2000, (2, 16), dtype=torch.int64)
    mask = torch.ones_like(ids)
    batch, seq = (
        torch.export.Dim("batch", min=1, max=1024),
        torch.export.Dim("sequence", min=1, max=checkpoint.max_seq_length),
    )
    return export_dynamo(
        module,
        (ids, mask),
        out_path,
        input_names=INPUT_NAMES,
        output_names=OUTPUT_NAMES,
        dynamic_shapes={name: {0: batch, 1: seq} for name in INPUT_NAMES},
    )
