"""Train the product-search heads (query intent + product duplicate) on one shared encoder.

    searchbar train product --out models/product_heads
    searchbar train product --out DIR --train-top-layers 0   # frozen encoder, heads only

The base encoder (the packaged all-MiniLM-L6-v2 unless ``--encoder``) is frozen except its top
``--train-top-layers`` transformer layers, which are fine-tuned jointly with both heads. The
frozen lower part runs once over the data (its output is cached), so each step costs only the
top layers: that is what makes CPU training take minutes. The checkpoint stores the heads and
the fine-tuned layers only; the rest is the base encoder, pinned by its sha256.

Why not fully frozen: the duplicate head sees one mean-pooled vector of "[CLS] A [SEP] B [SEP]",
and the off-the-shelf bi-encoder does not put an A-versus-B comparison into it (held-out duplicate
accuracy 0.53 frozen, chance 0.5; intent is 0.985 either way). Fine-tuning the top two layers
learns it. Why not the whole encoder: on 2 shared CPU cores a step over all six layers costs ~3x
a two-layer step and cannot be cached, so the training would take the better part of an hour,
and the checkpoint would be ~90 MB instead of ~15 MB.

Seeded; CUDA with bf16/fp16 autocast when available, FP32 on CPU. Writes weights.safetensors,
config.json and heldout_report.json into ``--out``.
"""

from __future__ import annotations

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

from search_build.training.product_data import (
    INTENT_LABELS,
    IntentExample,
    ProductPair,
    make_intent_splits,
    make_product_pair_splits,
)
from search_build.training.product_eval import duplicate_report, intent_report
from search_build.export.sentence_checkpoint import default_embedding_checkpoint
from search_build.training.product_multitask import (
    PACKAGE_ENCODER,
    MeanPooledEncoder,
    ProductMultitask,
    save_checkpoint,
    weights_sha256,
)

REPORT_FILE = "heldout_report.json"
DEFAULT_TOP_LAYERS = 2


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
        yield order[start : start + batch_size]


@torch.no_grad()
def embed(
    encoder: MeanPooledEncoder,
    items: Sequence,
    encode,
    sizes: Sequence[int],
    batch_size: int,
    device: torch.device,
    desc: str,
) -> torch.Tensor:
    encoder.eval()
    out = torch.empty(len(items), encoder.hidden_size)
    for idx in tqdm(list(length_sorted_batches(len(items), sizes, batch_size)), desc=desc, leave=False):
        with autocast(device):
            pooled = encoder(*to_tensors(encode([items[i] for i in idx]), device))
        out[torch.from_numpy(idx)] = pooled.float().cpu()
    return out


def pair_sizes(pairs: Sequence[ProductPair]) -> list[int]:
    return [sum(len(x or "") for r in (p.a, p.b) for x in (r.product_type, r.title, r.description)) for p in pairs]


class CachedStates:
    """Per-example hidden states entering the first trained encoder layer.

    The layers below it are frozen, so their output never changes: computing it once turns each
    training step into a pass over the top layers only (the cost that makes CPU training feasible).
    """

    def __init__(
        self,
        model: ProductMultitask,
        first_layer: int,
        items: Sequence,
        encode,
        sizes: Sequence[int],
        batch_size: int,
        device: torch.device,
        desc: str,
    ):
        self.states: list[torch.Tensor] = [torch.empty(0)] * len(items)
        with torch.no_grad():
            for idx in tqdm(list(length_sorted_batches(len(items), sizes, batch_size)), desc=desc, leave=False):
                ids, mask, types = to_tensors(encode([items[i] for i in idx]), device)
                with autocast(device):
                    hidden = model.hidden_states_before(first_layer, ids, mask, types)
                for row, i in enumerate(idx):
                    self.states[i] = hidden[row, : int(mask[row].sum())].float().cpu()

    def batch(self, idx: Sequence[int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [self.states[i] for i in idx]
        width = max(len(r) for r in rows)
        hidden = torch.zeros(len(rows), width, rows[0].shape[-1])
        mask = torch.zeros(len(rows), width, dtype=torch.int64)
        for j, r in enumerate(rows):
            hidden[j, : len(r)] = r
            mask[j, : len(r)] = 1
        return hidden.to(device), mask.to(device)


def train(
    model: ProductMultitask,
    first_layer: int,
    intents: CachedStates,
    intent_y: torch.Tensor,
    pairs: CachedStates,
    pair_y: torch.Tensor,
    epochs: int,
    intent_batch: int,
    pair_batch: int,
    encoder_lr: float,
    head_lr: float,
    device: torch.device,
    intent_every: int = 1,
) -> None:
    """Joint training of both heads and encoder layers >= ``first_layer``: every step sees a pair
    batch, every ``intent_every``-th step also a query batch."""
    layer_params = [p for layer in model.encoder_layers()[first_layer:] for p in layer.parameters()]
    head_params = [*model.intent_head.parameters(), *model.duplicate_head.parameters()]
    groups = [{"params": head_params, "lr": head_lr}] + (
        [{"params": layer_params, "lr": encoder_lr}] if layer_params else []
    )
    optimizer = torch.optim.AdamW(groups, weight_decay=0.01)
    n_i, n_p = len(intents.states), len(pairs.states)
    steps_per_epoch = math.ceil(n_p / pair_batch)  # an epoch is a pass over the pairs; queries cycle
    total = epochs * steps_per_epoch
    warmup = max(1, total // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(  # linear warm-up then linear decay to 0
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup)))
    )
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and not torch.cuda.is_bf16_supported())
    model.train()
    progress = tqdm(total=total, desc=f"train (encoder layers {first_layer}+ and heads)")
    for _ in range(epochs):
        intent_order, pair_order = np.random.permutation(n_i), np.random.permutation(n_p)
        for step in range(steps_per_epoch):
            ii = intent_order[(np.arange(intent_batch) + step // intent_every * intent_batch) % n_i]
            pi = pair_order[(np.arange(pair_batch) + step * pair_batch) % n_p]
            with autocast(device):
                dup_logit = model.duplicate_head(model.pooled_from(first_layer, *pairs.batch(pi, device)))
                loss = nn.functional.binary_cross_entropy_with_logits(dup_logit.float()[:, 0], pair_y[pi].to(device))
                # Intent is easy (a frozen encoder already gets ~98%): a batch every few steps keeps
                # the shared layers good for it at a fraction of the cost.
                if step % intent_every == 0:
                    intent_logits = model.intent_head(model.pooled_from(first_layer, *intents.batch(ii, device)))
                    loss = loss + nn.functional.cross_entropy(intent_logits.float(), intent_y[ii].to(device))
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
def predict(
    model: ProductMultitask, heldout_intents, heldout_pairs, inputs: Inputs, batch_size: int, device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    """Held-out intent logits [N, C] and duplicate logits [M] through the full model."""
    intent_emb = embed(
        model.encoder,
        heldout_intents,
        inputs.intent,
        [len(e.text) for e in heldout_intents],
        batch_size,
        device,
        "embed held-out queries",
    ).to(device)
    pair_emb = embed(
        model.encoder, heldout_pairs, inputs.pair, pair_sizes(heldout_pairs), batch_size, device, "embed held-out pairs"
    ).to(device)
    return (
        model.intent_head(intent_emb).float().cpu().numpy(),
        model.duplicate_head(pair_emb)[:, 0].float().cpu().numpy(),
    )


def build_config(args, encoder_dir: Path, hidden_size: int, trained_layers: list[int]) -> dict:
    packaged = Path(encoder_dir) == default_embedding_checkpoint()
    return {
        "encoder": {
            "source": PACKAGE_ENCODER if packaged else str(encoder_dir),
            "base": "sentence-transformers/all-MiniLM-L6-v2" if packaged else str(encoder_dir),
            "sha256": weights_sha256(encoder_dir),
            "hidden_size": hidden_size,
            "trained_layers": trained_layers,
        },
        "pooling": "mean",
        "intent": {
            "id2label": {str(i): label for i, label in enumerate(INTENT_LABELS)},
            "max_length": args.intent_max_length,
        },
        "duplicate": {
            "max_length": args.pair_max_length,
            "output": "logit",
            "positive": "duplicate",
            "threshold": 0.5,
            "field_separator": "|",
            "max_type_tokens": 16,
        },
        "heads": {"hidden": args.head_hidden, "dropout": args.dropout},
        "training": {
            "seed": args.seed,
            "data": "search_build.training.product_data (synthetic, templated)",
            "train_top_layers": args.train_top_layers,
            "epochs": args.epochs,
        },
    }


def add_arguments(parser) -> None:
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--encoder", type=Path, default=None, help="HF checkpoint dir (default: packaged MiniLM)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--train-top-layers",
        type=int,
        default=DEFAULT_TOP_LAYERS,
        help="fine-tune this many top encoder layers (0: frozen encoder, heads only)",
    )
    parser.add_argument("--epochs", type=int, default=None, help="default: 40 with a frozen encoder, else 4")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size of the caching pass")
    parser.add_argument("--intent-batch", type=int, default=32)
    parser.add_argument("--pair-batch", type=int, default=16)
    parser.add_argument("--intent-every", type=int, default=4, help="a query batch every N steps")
    parser.add_argument("--head-lr", type=float, default=2e-3)
    parser.add_argument("--encoder-lr", type=float, default=5e-4, help="for the fine-tuned top layers")
    parser.add_argument("--head-hidden", type=int, default=256)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--intent-max-length", type=int, default=64)
    # Titles and types carry the identity of a listing; 64 tokens keep them whole plus the start
    # of both descriptions, at half the cost of 128 (and a less diluted mean-pooled vector).
    parser.add_argument("--pair-max-length", type=int, default=64)
    parser.add_argument("--n-intent-train", type=int, default=2400)
    parser.add_argument("--n-pair-train", type=int, default=3000)
    parser.add_argument("--n-heldout", type=int, default=800, help="held-out examples per task")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")


def run(args) -> dict:
    args.epochs = args.epochs or (40 if args.train_top_layers == 0 else 4)

    seed_everything(args.seed)
    device = torch.device(args.device)
    encoder_dir = args.encoder or default_embedding_checkpoint()
    started = time.perf_counter()
    intents, heldout_intents = make_intent_splits(args.seed, args.n_intent_train, args.n_heldout)
    pairs, heldout_pairs = make_product_pair_splits(args.seed, args.n_pair_train, args.n_heldout)
    inputs = Inputs(encoder_dir, args.intent_max_length, args.pair_max_length)
    label_ids = {label: i for i, label in enumerate(INTENT_LABELS)}
    intent_y = torch.tensor([label_ids[e.label] for e in intents])
    pair_y = torch.tensor([float(p.label) for p in pairs])

    encoder = MeanPooledEncoder.from_pretrained(encoder_dir, attn_implementation="sdpa")
    model = ProductMultitask(encoder, len(INTENT_LABELS), args.head_hidden, args.dropout).to(device)
    model.encoder.requires_grad_(False)
    num_layers = len(model.encoder_layers())
    first_layer = num_layers - min(args.train_top_layers, num_layers)
    model.encoder_layers()[first_layer:].requires_grad_(True)
    intent_states = CachedStates(
        model,
        first_layer,
        intents,
        inputs.intent,
        [len(e.text) for e in intents],
        args.batch_size,
        device,
        "encode queries",
    )
    pair_states = CachedStates(
        model, first_layer, pairs, inputs.pair, pair_sizes(pairs), args.batch_size, device, "encode pairs"
    )
    train(
        model,
        first_layer,
        intent_states,
        intent_y,
        pair_states,
        pair_y,
        args.epochs,
        args.intent_batch,
        args.pair_batch,
        args.encoder_lr,
        args.head_lr,
        device,
        args.intent_every,
    )
    trained_layers = list(range(first_layer, num_layers))
    train_seconds = time.perf_counter() - started

    intent_logits, dup_logits = predict(model, heldout_intents, heldout_pairs, inputs, args.batch_size, device)
    probabilities = 1 / (1 + np.exp(-dup_logits))
    report = {
        "data": {
            "origin": "synthetic templated data from search_build.training.product_data; held-out templates, "
            "slot values and brands are unseen in training",
            "intent_train": len(intents),
            "intent_heldout": len(heldout_intents),
            "pair_train": len(pairs),
            "pair_heldout": len(heldout_pairs),
        },
        "intent": intent_report(
            [e.label for e in heldout_intents], [INTENT_LABELS[i] for i in intent_logits.argmax(1)], INTENT_LABELS
        ),
        "duplicate": duplicate_report([p.label for p in heldout_pairs], probabilities, [p.kind for p in heldout_pairs]),
        "training": {
            "seconds": round(train_seconds, 1),
            "device": str(device),
            "train_top_layers": args.train_top_layers,
            "epochs": args.epochs,
            "seed": args.seed,
            "torch_threads": torch.get_num_threads(),
        },
    }
    config = build_config(args, encoder_dir, model.encoder.hidden_size, trained_layers)
    save_checkpoint(model.cpu(), args.out, config)
    (args.out / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    print(
        json.dumps(
            {
                "intent_accuracy": report["intent"]["accuracy"],
                "duplicate": {k: report["duplicate"][k] for k in ("accuracy", "f1", "roc_auc")},
                "train_seconds": report["training"]["seconds"],
                "out": str(args.out),
            },
            indent=2,
        )
    )
    return report


if __name__ == "__main__":
    from search_tools.cli import run_as_main

    run_as_main(__spec__.name)
