"""Train the product-search heads (query intent + product duplicate) on one shared encoder.

    python -m search_build.product_train --out models/product_heads            # frozen encoder (default)
    python -m search_build.product_train --out DIR --finetune-encoder          # multitask fine-tuning

Frozen (default): the package's all-MiniLM-L6-v2 embeds every example once, then only the two
small heads train on the cached embeddings; the checkpoint is the head weights (< 1 MB) and the
encoder is named by source + sha256. ``--finetune-encoder`` trains everything jointly and also
saves the encoder (~90 MB). Seeded; CUDA with bf16/fp16 autocast when available, FP32 on CPU.
Writes heads.safetensors, config.json and heldout_report.json into ``--out``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import random
import time
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from search_backends.pair_encoding import PairEncoder
from search_backends.tokenization import BatchTokenizer, EncodedBatch

from .product_data import INTENT_LABELS, IntentExample, ProductPair, make_intent_splits, make_product_pair_splits
from .product_eval import duplicate_report, intent_report
from .product_multitask import (PACKAGE_ENCODER, MeanPooledEncoder, ProductMultitask, package_encoder_dir,
                                save_checkpoint, weights_sha256)

REPORT_FILE = "heldout_report.json"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def autocast(device: torch.device):
    """Mixed precision on CUDA only; CPU stays FP32 (CPU autocast is slower than FP32 here)."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def to_tensors(batch: EncodedBatch, device: torch.device) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(a).to(device) for a in (batch.input_ids, batch.attention_mask, batch.token_type_ids))


class Inputs:
    """Tokenizes examples for either task with the serving-side code (same ids as production)."""

    def __init__(self, tokenizer_dir: Path, intent_max_length: int, pair_max_length: int):
        self.queries = BatchTokenizer(tokenizer_dir, max_length=intent_max_length)
        self.pairs = PairEncoder.from_dir(tokenizer_dir, max_length=pair_max_length)

    def intent(self, examples: Sequence[IntentExample]) -> EncodedBatch:
        return self.queries.encode([e.text for e in examples])

    def pair(self, pairs: Sequence[ProductPair]) -> EncodedBatch:
        return self.pairs.encode_records([(p.a, p.b) for p in pairs])


def length_sorted_batches(n: int, sizes: Sequence[int], batch_size: int) -> Iterator[np.ndarray]:
    """Index batches of similar length (less padding, faster inference); order restored by the caller."""
    order = np.argsort(np.asarray(sizes), kind="stable")
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


@torch.no_grad()
def embed(encoder: MeanPooledEncoder, items: Sequence, encode, sizes: Sequence[int], batch_size: int,
          device: torch.device, desc: str) -> torch.Tensor:
    encoder.eval()
    out = torch.empty(len(items), encoder.hidden_size)
    for idx in tqdm(list(length_sorted_batches(len(items), sizes, batch_size)), desc=desc, leave=False):
        with autocast(device):
            pooled = encoder(*to_tensors(encode([items[i] for i in idx]), device))
        out[torch.from_numpy(idx)] = pooled.float().cpu()
    return out


def pair_sizes(pairs: Sequence[ProductPair]) -> list[int]:
    return [sum(len(x or "") for r in (p.a, p.b) for x in (r.product_type, r.title, r.description)) for p in pairs]


def train_heads_on_embeddings(model: ProductMultitask, intent_x: torch.Tensor, intent_y: torch.Tensor,
                              pair_x: torch.Tensor, pair_y: torch.Tensor, epochs: int, batch_size: int,
                              lr: float, weight_decay: float) -> None:
    heads = [p for n, p in model.named_parameters() if not n.startswith("encoder.")]
    optimizer = torch.optim.AdamW(heads, lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(max(len(intent_x), len(pair_x)) / batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch)
    model.train()
    for _ in tqdm(range(epochs), desc="heads"):
        intent_order, pair_order = torch.randperm(len(intent_x)), torch.randperm(len(pair_x))
        for step in range(steps_per_epoch):
            ii = intent_order[(torch.arange(batch_size) + step * batch_size) % len(intent_x)]
            pi = pair_order[(torch.arange(batch_size) + step * batch_size) % len(pair_x)]
            loss = (nn.functional.cross_entropy(model.intent_head(intent_x[ii]), intent_y[ii])
                    + nn.functional.binary_cross_entropy_with_logits(model.duplicate_head(pair_x[pi])[:, 0], pair_y[pi]))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
    model.eval()


def finetune(model: ProductMultitask, inputs: Inputs, intents: Sequence[IntentExample], intent_y: torch.Tensor,
             pairs: Sequence[ProductPair], pair_y: torch.Tensor, epochs: int, intent_batch: int, pair_batch: int,
             encoder_lr: float, head_lr: float, device: torch.device) -> None:
    """Joint training: each step sees one intent batch and one pair batch."""
    encoder_params = [p for n, p in model.named_parameters() if n.startswith("encoder.")]
    head_params = [p for n, p in model.named_parameters() if not n.startswith("encoder.")]
    optimizer = torch.optim.AdamW([{"params": encoder_params, "lr": encoder_lr},
                                   {"params": head_params, "lr": head_lr}], weight_decay=0.01)
    steps_per_epoch = max(math.ceil(len(intents) / intent_batch), math.ceil(len(pairs) / pair_batch))
    total = epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(  # linear warm-up (10%) then linear decay
        optimizer, lambda s: min((s + 1) / max(1, total // 10), max(0.0, (total - s) / (total - total // 10))))
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and not torch.cuda.is_bf16_supported())
    model.train()
    progress = tqdm(total=total, desc="fine-tune")
    for _ in range(epochs):
        intent_order, pair_order = np.random.permutation(len(intents)), np.random.permutation(len(pairs))
        for step in range(steps_per_epoch):
            ii = intent_order[(np.arange(intent_batch) + step * intent_batch) % len(intents)]
            pi = pair_order[(np.arange(pair_batch) + step * pair_batch) % len(pairs)]
            with autocast(device):
                intent_logits = model.intent_logits(*to_tensors(inputs.intent([intents[i] for i in ii]), device))
                dup_logit = model.duplicate_logit(*to_tensors(inputs.pair([pairs[i] for i in pi]), device))
            loss = (nn.functional.cross_entropy(intent_logits.float(), intent_y[ii].to(device))
                    + nn.functional.binary_cross_entropy_with_logits(dup_logit.float()[:, 0], pair_y[pi].to(device)))
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            progress.update()
            progress.set_postfix(loss=f"{loss.item():.3f}")
    progress.close()
    model.eval()


@torch.no_grad()
def predict(model: ProductMultitask, heldout_intents, heldout_pairs, inputs: Inputs, batch_size: int,
            device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Held-out intent logits [N, C] and duplicate logits [M] through the full model."""
    intent_emb = embed(model.encoder, heldout_intents, inputs.intent, [len(e.text) for e in heldout_intents],
                       batch_size, device, "embed held-out queries").to(device)
    pair_emb = embed(model.encoder, heldout_pairs, inputs.pair, pair_sizes(heldout_pairs), batch_size, device,
                     "embed held-out pairs").to(device)
    return (model.intent_head(intent_emb).float().cpu().numpy(),
            model.duplicate_head(pair_emb)[:, 0].float().cpu().numpy())


def build_config(args, encoder_dir: Path, hidden_size: int) -> dict:
    return {
        "encoder": {"source": PACKAGE_ENCODER if Path(encoder_dir) == package_encoder_dir() else str(encoder_dir),
                    "base": "sentence-transformers/all-MiniLM-L6-v2", "fine_tuned": False,
                    "sha256": weights_sha256(encoder_dir), "hidden_size": hidden_size},
        "pooling": "mean",
        "intent": {"id2label": {str(i): label for i, label in enumerate(INTENT_LABELS)},
                   "max_length": args.intent_max_length},
        "duplicate": {"max_length": args.pair_max_length, "output": "logit", "positive": "duplicate",
                      "threshold": 0.5, "field_separator": "|", "max_type_tokens": 16},
        "heads": {"hidden": args.head_hidden, "dropout": args.dropout},
        "training": {"seed": args.seed, "data": "search_build.product_data (synthetic, templated)",
                     "finetune_encoder": args.finetune_encoder, "epochs": args.epochs},
    }


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--encoder", type=Path, default=None, help="HF checkpoint dir (default: packaged MiniLM)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--finetune-encoder", action="store_true")
    parser.add_argument("--epochs", type=int, default=None, help="default: 60 frozen, 2 fine-tuning")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--head-lr", type=float, default=2e-3)
    parser.add_argument("--encoder-lr", type=float, default=5e-5)
    parser.add_argument("--head-hidden", type=int, default=256)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--intent-max-length", type=int, default=64)
    parser.add_argument("--pair-max-length", type=int, default=128)
    parser.add_argument("--n-intent-train", type=int, default=2400)
    parser.add_argument("--n-pair-train", type=int, default=3000)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    args.epochs = args.epochs or (2 if args.finetune_encoder else 60)

    seed_everything(args.seed)
    device = torch.device(args.device)
    encoder_dir = args.encoder or package_encoder_dir()
    started = time.perf_counter()
    intents, heldout_intents = make_intent_splits(args.seed, n_train=args.n_intent_train)
    pairs, heldout_pairs = make_product_pair_splits(args.seed, n_train=args.n_pair_train)
    inputs = Inputs(encoder_dir, args.intent_max_length, args.pair_max_length)
    label_ids = {label: i for i, label in enumerate(INTENT_LABELS)}
    intent_y = torch.tensor([label_ids[e.label] for e in intents])
    pair_y = torch.tensor([float(p.label) for p in pairs])

    encoder = MeanPooledEncoder.from_pretrained(encoder_dir, attn_implementation="sdpa")
    model = ProductMultitask(encoder, len(INTENT_LABELS), args.head_hidden, args.dropout).to(device)
    if args.finetune_encoder:
        finetune(model, inputs, intents, intent_y, pairs, pair_y, args.epochs, args.batch_size // 2,
                 args.batch_size // 4, args.encoder_lr, args.head_lr / 2, device)
    else:
        model.encoder.requires_grad_(False)
        intent_x = embed(model.encoder, intents, inputs.intent, [len(e.text) for e in intents],
                         args.batch_size, device, "embed queries").to(device)
        pair_x = embed(model.encoder, pairs, inputs.pair, pair_sizes(pairs), args.batch_size, device,
                       "embed pairs").to(device)
        train_heads_on_embeddings(model, intent_x, intent_y.to(device), pair_x, pair_y.to(device), args.epochs,
                                  args.batch_size, args.head_lr, weight_decay=1e-4)
    train_seconds = time.perf_counter() - started

    intent_logits, dup_logits = predict(model, heldout_intents, heldout_pairs, inputs, args.batch_size, device)
    probabilities = 1 / (1 + np.exp(-dup_logits))
    report = {
        "data": {"origin": "synthetic templated data from search_build.product_data; held-out templates, "
                           "slot values and brands are unseen in training",
                 "intent_train": len(intents), "intent_heldout": len(heldout_intents),
                 "pair_train": len(pairs), "pair_heldout": len(heldout_pairs)},
        "intent": intent_report([e.label for e in heldout_intents],
                                [INTENT_LABELS[i] for i in intent_logits.argmax(1)], INTENT_LABELS),
        "duplicate": duplicate_report([p.label for p in heldout_pairs], probabilities,
                                      [p.kind for p in heldout_pairs]),
        "training": {"seconds": round(train_seconds, 1), "device": str(device),
                     "finetune_encoder": args.finetune_encoder, "epochs": args.epochs, "seed": args.seed,
                     "torch_threads": torch.get_num_threads()},
    }
    config = build_config(args, encoder_dir, model.encoder.hidden_size)
    save_checkpoint(model.cpu(), args.out, config, fine_tuned_encoder=args.finetune_encoder)
    (args.out / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({"intent_accuracy": report["intent"]["accuracy"],
                      "duplicate": {k: report["duplicate"][k] for k in ("accuracy", "f1", "roc_auc")},
                      "train_seconds": report["training"]["seconds"], "out": str(args.out)}, indent=2))
    return report


if __name__ == "__main__":
    main()
