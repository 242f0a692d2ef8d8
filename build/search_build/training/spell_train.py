"""Train the music-search spell corrector: a small character-level BART on query-shaped pairs.

    searchbar train spell --out models/spell_bart --init-from models/spell_bart --minutes 60

Pairs are generated on the fly (search_build.training.spell_data), so every step sees fresh queries and typos.
Mixed precision with large batches: bf16 autocast on CPU where oneDNN supports it (AMX / AVX-512 BF16),
bf16 or fp16 (with a grad scaler) on CUDA. Before training, a speed check measures FP32 batch 32 against
mixed precision at the training batch size in the same run and records steps/s and samples/s. `--minutes`
sizes the run from that measurement. The output directory holds a safetensors checkpoint,
generation_config.json with the serving defaults, the tokenizer, the guard's lexicon (`lexicon.tsv`),
a training curve (`training_curve.png`) and training_report.json.
"""

from __future__ import annotations

import json
import math
import platform
import random
import time
from pathlib import Path

import torch
from tqdm import tqdm
from transformers import BartConfig, BartForConditionalGeneration, GenerationConfig

from search_build.training.spell_data import (
    EVAL_QUERIES,
    SpellDataset,
    build_dataset,
    held_out_real_pairs,
    misspelled_words,
)
from search_build.training.spell_tokenizer import build_char_tokenizer, save_bart_tokenizer
from search_backends.contracts.spell_correct import BIGRAMS_FILE
from search_build.training.spell_sources import write_guard_files

BOS, PAD, EOS = 0, 1, 2
MAX_POSITIONS = 64  # tokens = UTF-8 bytes + <s> + </s>; queries here are at most ~50 bytes
# BART's convention, in the model and in generation alike: decoding starts with </s>.
SPECIAL_TOKEN_IDS = {"bos_token_id": BOS, "pad_token_id": PAD, "eos_token_id": EOS, "decoder_start_token_id": EOS}


def tiny_bart_config(
    vocab_size: int, d_model: int = 128, layers: int = 3, heads: int = 4, decoder_layers: int | None = None
) -> BartConfig:
    """`layers` encoder layers and `decoder_layers` (default: as many) decoder layers."""
    return BartConfig(
        vocab_size=vocab_size,
        d_model=d_model,
        encoder_layers=layers,
        decoder_layers=layers if decoder_layers is None else decoder_layers,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=4 * d_model,
        decoder_ffn_dim=4 * d_model,
        max_position_embeddings=MAX_POSITIONS,
        dropout=0.0,  # every batch is freshly generated: nothing to overfit, and dropout slows a short run
        attention_dropout=0.0,
        activation_dropout=0.0,
        activation_function="gelu",
        **SPECIAL_TOKEN_IDS,
        scale_embedding=True,
        tie_word_embeddings=True,
    )


def init_sinusoidal_positions(model: BartForConditionalGeneration, scale: float = 1.0) -> None:
    """Start BART's learned position tables (encoder and decoder) from the same sinusoids.

    From random positions the decoder needs many steps to learn to line its cross-attention up with the input
    and sits on a language-model plateau (loss ~2.4) meanwhile; shared sinusoids make "same position" easy to
    find. Measured (seed 0, batch 128): random tables still on the plateau after 300 steps, sinusoids off it by
    ~250. The escape is not guaranteed: with --steps 2400 (longer warmup) one run stayed stuck for 800 steps;
    peak lr 1e-3 with scale 0.5 escaped reliably (2 seeds) but reached lower accuracy in 2000 steps (39.5% vs
    45.1% held-out). If a run's loss is still ~2 after 500 steps, lower --lr.
    """
    for table in (model.model.encoder.embed_positions, model.model.decoder.embed_positions):
        rows, dim = table.weight.shape
        position = torch.arange(rows, dtype=torch.float32) - table.offset  # BART stores position p at row p + 2
        frequency = 10000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float32) / dim)
        angles = position[:, None] * frequency[None, :]
        with torch.no_grad():
            table.weight.copy_(torch.cat([torch.sin(angles), torch.cos(angles)], dim=1) * scale)


def serving_generation_config(num_beams: int = 4) -> GenerationConfig:
    """BART's decoding convention (start with </s>, force <s> first) with limits sized for search queries."""
    return GenerationConfig(
        **SPECIAL_TOKEN_IDS,
        forced_bos_token_id=BOS,
        forced_eos_token_id=EOS,
        num_beams=num_beams,
        early_stopping=True,
        length_penalty=1.0,
        no_repeat_ngram_size=0,
        max_length=MAX_POSITIONS,
    )


def encode_batch(tokenizer, texts: list[str], max_len: int = MAX_POSITIONS) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and mask; over-long inputs keep their first max_len-1 tokens plus </s>."""
    rows = [
        enc.ids if len(enc.ids) <= max_len else enc.ids[: max_len - 1] + [EOS] for enc in tokenizer.encode_batch(texts)
    ]
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), PAD, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    return ids, mask


def training_batches(tokenizer, dataset: SpellDataset, rng: random.Random, batch_size: int, pool: int = 16):
    """Endless batches of fresh pairs; each pool of `pool` batches is sorted by length so little is padding."""
    while True:
        pairs = sorted((dataset.pair(rng) for _ in range(batch_size * pool)), key=lambda p: len(p[0]) + len(p[1]))
        chunks = [pairs[i : i + batch_size] for i in range(0, len(pairs), batch_size)]
        rng.shuffle(chunks)
        for chunk in chunks:
            yield tensor_batch(tokenizer, chunk)


def tensor_batch(tokenizer, pairs: list[tuple[str, str]]) -> dict[str, torch.Tensor]:
    input_ids, attention_mask = encode_batch(tokenizer, [noisy for noisy, _ in pairs])
    labels, label_mask = encode_batch(tokenizer, [clean for _, clean in pairs])
    labels = labels.masked_fill(label_mask == 0, -100)  # the model shifts labels right into decoder inputs
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 where the hardware runs it natively (CUDA Ampere+, CPU oneDNN with AMX/AVX-512 BF16), else fp16 on CUDA."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return torch.bfloat16
    return None


def precision_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """`--precision`: "auto" (autocast_dtype), "fp32" (no autocast), "bf16" or "fp16"."""
    if precision == "auto":
        return autocast_dtype(device)
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def speed_check(
    config: BartConfig,
    tokenizer,
    dataset: SpellDataset,
    dev: torch.device,
    batch_size: int,
    amp_dtype: torch.dtype | None,
    steps: int = 12,
    warmup: int = 3,
) -> list[dict]:
    """Steps/s and samples/s of FP32 batch 32 vs mixed precision at `batch_size`, one run, same model shape."""
    rows = []
    for label, size, dtype in (
        ("fp32", 32, None),
        (str(amp_dtype).replace("torch.", "") if amp_dtype else "fp32", batch_size, amp_dtype),
    ):
        torch.manual_seed(0)
        model = BartForConditionalGeneration(config).to(dev).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        batches = training_batches(tokenizer, dataset, random.Random(1), size)
        for step in range(warmup + steps):
            if step == warmup:
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                started = time.perf_counter()
            batch = {k: v.to(dev) for k, v in next(batches).items()}
            with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
                loss = model(**batch).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        rows.append(
            {
                "precision": label,
                "batch_size": size,
                "steps_per_s": round(steps / seconds, 3),
                "samples_per_s": round(steps * size / seconds, 1),
            }
        )
        print(
            f"speed check: {label} batch {size}: {rows[-1]['steps_per_s']} steps/s, "
            f"{rows[-1]['samples_per_s']} samples/s",
            flush=True,
        )
    rows.append({"samples_per_s_ratio": round(rows[1]["samples_per_s"] / rows[0]["samples_per_s"], 2)})
    return rows


@torch.no_grad()
def correct(model, tokenizer, texts: list[str], batch_size: int = 256, **generate_kwargs) -> list[str]:
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(texts), batch_size):
        ids, mask = encode_batch(tokenizer, texts[start : start + batch_size])
        generated = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **generate_kwargs)
        out += [tokenizer.decode(row, skip_special_tokens=True) for row in generated.tolist()]
    return out


def exact_match(predictions: list[str], pairs: list[tuple[str, str]]) -> float:
    return sum(p == clean for p, (_, clean) in zip(predictions, pairs)) / max(1, len(pairs))


def evaluate(model, tokenizer, dataset: SpellDataset, n: int, seed: int) -> dict[str, float]:
    """Raw model (no guard), beam 4: held-out real misspellings fixed, and fresh correct queries kept."""
    pairs = held_out_real_pairs(dataset, n, seed=seed + 1)
    predictions = correct(model, tokenizer, [noisy for noisy, _ in pairs])
    misspelled = [(p, q) for p, q in zip(predictions, pairs) if q[0] != q[1]]
    intact = [(p, q) for p, q in zip(predictions, pairs) if q[0] == q[1]]
    return {
        "held_out_real_misspellings_fixed": exact_match([p for p, _ in misspelled], [q for _, q in misspelled]),
        "correct_queries_unchanged": exact_match([p for p, _ in intact], [q for _, q in intact]),
        "n_eval_pairs": len(pairs),
    }


def save_checkpoint(model, out: Path, lexicon: dict[str, float]) -> None:
    model.save_pretrained(out, safe_serialization=True)
    save_bart_tokenizer(out, model_max_length=MAX_POSITIONS)
    if not (out / BIGRAMS_FILE).exists():
        write_guard_files(out, lexicon)


def plot_curve(curve: list[tuple[int, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([s for s, _ in curve], [loss for _, loss in curve])
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (EMA)")
    ax.set_yscale("log")
    ax.set_title("spell_bart training")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def train(
    out_dir: str | Path,
    steps: int | None = None,
    minutes: float | None = None,
    batch_size: int | None = None,
    lr: float = 2e-3,
    seed: int = 0,
    d_model: int = 128,
    encoder_layers: int = 3,
    decoder_layers: int = 3,
    heads: int = 4,
    init_from: str | Path | None = None,
    eval_pairs: int = 500,
    device: str | None = None,
    threads: int | None = None,
    precision: str = "auto",
    checkpoint_every_s: float = 600.0,
    exclude_file: str | Path | None = None,
) -> dict:
    torch.manual_seed(seed)
    rng = random.Random(seed)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if threads:
        torch.set_num_threads(threads)
    amp_dtype = precision_dtype(dev, precision)
    batch_size = batch_size or (1024 if dev.type == "cuda" else 256 if amp_dtype else 128)

    tokenizer = build_char_tokenizer()
    excluded = frozenset(misspelled_words(exclude_file)) if exclude_file else frozenset()
    dataset = build_dataset(seed=seed, exclude_misspellings=excluded)
    if init_from:
        model = BartForConditionalGeneration.from_pretrained(init_from, use_safetensors=True)
        config = model.config
    else:
        config = tiny_bart_config(
            tokenizer.get_vocab_size(),
            d_model=d_model,
            layers=encoder_layers,
            heads=heads,
            decoder_layers=decoder_layers,
        )
        model = BartForConditionalGeneration(config)
        init_sinusoidal_positions(model)
    speed = speed_check(config, tokenizer, dataset, dev, batch_size, amp_dtype)
    if steps is None:
        steps = max(10, int((minutes or 10) * 60 * speed[1]["steps_per_s"]))
    model = model.to(dev)
    model.generation_config = serving_generation_config()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    warmup = max(1, steps // 20)
    out = Path(out_dir)

    started = last_saved = time.perf_counter()
    model.train()
    bar = tqdm(range(steps), desc="spell_train", mininterval=5.0)
    ema_loss, curve = None, []
    batches = training_batches(tokenizer, dataset, rng, batch_size)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup)
        batch = {k: v.to(dev, non_blocking=True) for k, v in next(batches).items()}
        with torch.autocast(dev.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = model(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
        ema_loss = loss.item() if ema_loss is None else 0.98 * ema_loss + 0.02 * loss.item()
        if step % 20 == 0:
            curve.append((step, ema_loss))
        bar.set_postfix(loss=f"{ema_loss:.3f}", refresh=False)
        if time.perf_counter() - last_saved > checkpoint_every_s:  # a stopped run still leaves a usable model
            save_checkpoint(model, out, dataset.lexicon)
            model.train()
            last_saved = time.perf_counter()
    train_seconds = time.perf_counter() - started

    model = model.float().cpu().eval()
    save_checkpoint(model, out, dataset.lexicon)
    plot_curve(curve, out / "training_curve.png")
    eval_started = time.perf_counter()
    metrics = evaluate(model, tokenizer, dataset, eval_pairs, seed)
    report = {
        **metrics,
        "decoding": f"model.generate with generation_config.json defaults (num_beams={model.generation_config.num_beams})",
        "train_seconds": round(train_seconds, 1),
        "eval_seconds": round(time.perf_counter() - eval_started, 1),
        "final_loss_ema": round(ema_loss, 4),
        "steps": steps,
        "batch_size": batch_size,
        "samples_seen": steps * batch_size,
        "peak_lr": lr,
        "seed": seed,
        "init_from": str(init_from) if init_from else None,
        "device": str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(dev),
        "threads": torch.get_num_threads(),
        "mixed_precision": str(amp_dtype) if amp_dtype else None,
        "speed_check": speed,
        "parameters": sum(p.numel() for p in model.parameters()),
        "lexicon_words": len(dataset.lexicon),
        "held_out_real_misspelling_words": len(dataset.held_out_real),
        "excluded_misspellings": len(excluded),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    (out / "training_report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def speed_check_only(args) -> list[dict]:
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    tokenizer = build_char_tokenizer()
    config = tiny_bart_config(
        tokenizer.get_vocab_size(),
        d_model=args.d_model,
        layers=args.encoder_layers,
        heads=args.heads,
        decoder_layers=args.decoder_layers,
    )
    return speed_check(
        config,
        tokenizer,
        build_dataset(seed=args.seed),
        dev,
        args.batch_size or 256,
        precision_dtype(dev, args.precision),
    )


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, help="checkpoint directory (e.g. models/spell_bart)")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, default=None)
    length.add_argument("--minutes", type=float, default=None, help="size the run from the speed check")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 256 mixed / 128 fp32 on CPU, 1024 CUDA")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--encoder-layers", type=int, default=3)
    parser.add_argument("--decoder-layers", type=int, default=3)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--init-from", default=None, help="continue from this checkpoint (its shape wins)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto")
    parser.add_argument("--eval-pairs", type=int, default=500)
    parser.add_argument(
        "--exclude-eval", default=str(EVAL_QUERIES), help="evaluation TSV whose misspellings never enter training"
    )
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--speed-check-only",
        action="store_true",
        help="measure FP32 batch 32 vs mixed precision at --batch-size for this shape, then stop",
    )


def run(args) -> None:
    if args.speed_check_only:
        print(json.dumps(speed_check_only(args), indent=2))
        return
    report = train(
        args.out,
        steps=args.steps,
        minutes=args.minutes,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        d_model=args.d_model,
        encoder_layers=args.encoder_layers,
        decoder_layers=args.decoder_layers,
        heads=args.heads,
        init_from=args.init_from,
        eval_pairs=args.eval_pairs,
        device=args.device,
        threads=args.threads,
        precision=args.precision,
        exclude_file=args.exclude_eval or None,
    )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    from search_tools.cli import run_as_main

    run_as_main(__spec__.name)
