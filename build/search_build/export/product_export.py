"""Export the product models as three ONNX graphs (dynamo exporter) and check them against PyTorch.

    searchbar export product --checkpoint models/product_heads --out artifacts/product_onnx

  product_encoder.onnx         input_ids, attention_mask, token_type_ids int64 [B, S] -> embedding float32 [B, H]
  query_intent_head.onnx       embedding [B, H] -> logits [B, C]
  product_duplicate_head.onnx  embedding [B, H] -> logit [B, 1]

Works for any BERT-style Hugging Face checkpoint directory plus heads trained on it: the encoder
comes from the checkpoint's recorded source unless ``--encoder`` names another directory.
The output directory also gets the tokenizer files and ``product_models.json`` so it is
self-contained for :class:`search_backends.product_onnx.ProductOnnxModels`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from search_backends.contracts.product_search import (
    CONFIG_FILE,
    DUPLICATE_HEAD_FILE,
    DUPLICATE_LOGIT,
    ENCODER_FILE,
    IDS,
    INTENT_HEAD_FILE,
    INTENT_LOGITS,
    POOLED_EMBEDDING,
)
from search_backends.product_onnx import ProductOnnxModels
from search_backends.tokenization import EncodedBatch

from search_build.export.onnx_export import export_dynamo
from search_build.training.product_multitask import (
    MeanPooledEncoder,
    ProductMultitask,
    load_product_model,
    resolve_encoder_dir,
)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
MAX_BATCH = 1024


def export_encoder(encoder: MeanPooledEncoder, path: str | Path) -> Path:
    max_seq = int(encoder.encoder.config.max_position_embeddings)
    ids = torch.randint(1000, 2000, (2, 16), dtype=torch.int64)
    example = (ids, torch.ones_like(ids), torch.zeros_like(ids))
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    seq = torch.export.Dim("sequence", min=1, max=max_seq)
    shapes = {name: {0: batch, 1: seq} for name in IDS}
    return export_dynamo(
        encoder.eval(), example, path, input_names=IDS, output_names=(POOLED_EMBEDDING,), dynamic_shapes=shapes
    )


def export_head(head: nn.Module, hidden_size: int, path: str | Path, output_name: str) -> Path:
    example = (torch.randn(2, hidden_size),)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    return export_dynamo(
        head.eval(),
        example,
        path,
        input_names=(POOLED_EMBEDDING,),
        output_names=(output_name,),
        dynamic_shapes=({0: batch},),
    )


def export_product_models(
    checkpoint_dir: str | Path, out_dir: str | Path, encoder_dir: str | Path | None = None
) -> Path:
    out_dir = Path(out_dir)
    model, config = load_product_model(checkpoint_dir, encoder_dir)
    hidden = model.encoder.hidden_size
    export_encoder(model.encoder, out_dir / ENCODER_FILE)
    export_head(model.intent_head, hidden, out_dir / INTENT_HEAD_FILE, INTENT_LOGITS)
    export_head(model.duplicate_head, hidden, out_dir / DUPLICATE_HEAD_FILE, DUPLICATE_LOGIT)
    source = Path(encoder_dir) if encoder_dir else resolve_encoder_dir(config)
    for name in TOKENIZER_FILES:
        if (source / name).exists():
            shutil.copy2(source / name, out_dir / name)
    (out_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return out_dir


@torch.no_grad()
def check_against_torch(
    model: ProductMultitask,
    export_dir: str | Path,
    query_batches: Sequence[EncodedBatch],
    pair_batches: Sequence[EncodedBatch],
) -> dict:
    """Run both chains (ONNX Runtime encoder -> head vs the PyTorch module) on the same token batches.

    Returns max |diff| of embeddings and logits, how many rows' decisions agree (intent argmax;
    duplicate logit sign, i.e. p >= 0.5), and the ONNX logits in batch order ("intent_logits",
    "duplicate_logits") for accuracy checks.
    """
    onnx = ProductOnnxModels(export_dir, providers=["CPUExecutionProvider"])
    model = model.eval()
    stats = {
        "embedding_max_abs_diff": 0.0,
        "intent_logits_max_abs_diff": 0.0,
        "duplicate_logit_max_abs_diff": 0.0,
        "intent_rows": 0,
        "intent_argmax_agree": 0,
        "duplicate_rows": 0,
        "duplicate_decision_agree": 0,
    }

    def tensors(batch: EncodedBatch):
        return [torch.from_numpy(a) for a in (batch.input_ids, batch.attention_mask, batch.token_type_ids)]

    def compare(batches, torch_head, onnx_head, task: str, diff_key: str, agree_key: str, agree) -> list[np.ndarray]:
        """One task's batches through both chains: its stats updated, its ONNX logits returned."""
        logits = []
        for batch in batches:
            want_emb = model.encoder(*tensors(batch))
            want = torch_head(want_emb).numpy()
            got_emb = onnx.embed(batch)
            got = onnx_head(got_emb)
            stats["embedding_max_abs_diff"] = max(stats["embedding_max_abs_diff"], _max_diff(got_emb, want_emb.numpy()))
            stats[diff_key] = max(stats[diff_key], _max_diff(got, want))
            stats[f"{task}_rows"] += len(got)
            stats[agree_key] += int(agree(got, want).sum())
            logits.append(got)
        return logits

    intent_out = compare(
        query_batches,
        model.intent_head,
        onnx.intent_logits,
        "intent",
        "intent_logits_max_abs_diff",
        "intent_argmax_agree",
        lambda got, want: got.argmax(1) == want.argmax(1),
    )
    duplicate_out = compare(
        pair_batches,
        model.duplicate_head,
        onnx.duplicate_logits,
        "duplicate",
        "duplicate_logit_max_abs_diff",
        "duplicate_decision_agree",
        lambda got, want: (got >= 0) == (want >= 0),
    )
    stats["intent_logits"] = np.concatenate(intent_out) if intent_out else np.zeros((0, 0), np.float32)
    stats["duplicate_logits"] = np.concatenate(duplicate_out) if duplicate_out else np.zeros((0, 1), np.float32)
    return stats


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0


def add_arguments(parser) -> None:
    parser.add_argument("--checkpoint", type=Path, default=Path("models/product_heads"))
    parser.add_argument("--encoder", type=Path, default=None, help="override the checkpoint's encoder source")
    parser.add_argument("--out", type=Path, default=Path("artifacts/product_onnx"))
    parser.add_argument("--check", action="store_true", help="compare against PyTorch on sample inputs")


def run(args) -> None:
    out = export_product_models(args.checkpoint, args.out, args.encoder)
    print(f"exported to {out}")
    if args.check:
        model, _ = load_product_model(args.checkpoint, args.encoder)
        onnx = ProductOnnxModels(out)
        queries = onnx.queries.encode(["play taylor swift", "how do i reset my password", "weather tomorrow"])
        pairs = onnx.pairs.encode(
            ["Headphones", None],
            ["Aurex Pulse AX-450 Headphones, Black", "Tee"],
            ["Wireless.", ""],
            ["headphones", "T-Shirts"],
            ["Aurex AX450 Pulse Blk", "Tee M"],
            [None, "Cotton."],
        )
        stats = check_against_torch(model, out, [queries], [pairs])
        print(json.dumps({k: v for k, v in stats.items() if not isinstance(v, np.ndarray)}, indent=2))


if __name__ == "__main__":
    from search_tools.cli import run_as_main

    run_as_main(__spec__.name)
