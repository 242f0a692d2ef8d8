"""Spell-model shapes: serving latency (CTranslate2, beam 4, batch 1) and training speed, side by side.

The accuracy/latency trade-off of the spell corrector is set by its shape: decoder steps dominate serving
(one per output character), so the decoder must stay shallow while the encoder may grow. For each shape,
a randomly initialised character BART is converted to CTranslate2 (fp32 and int8) and timed on a
worst-case-length query (the output forced to the input's length + 2), and its training throughput is
measured (FP32 batch 32 vs mixed precision batch 256) by search_build.training.spell_train's speed check.

    python benchmarks/bench_spell_shapes.py [--threads 1] [--out benchmarks/results/spell_shapes.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

SHAPES = ((128, 3, 3), (128, 6, 2), (192, 6, 2), (256, 4, 2), (256, 6, 2), (256, 4, 4))
QUERY = "metalica enter sandman live"


def ct2_latency(model_dir: Path, tokens: list[str], compute_type: str, threads: int, runs: int = 200) -> dict:
    import ctranslate2

    translator = ctranslate2.Translator(
        str(model_dir), device="cpu", inter_threads=1, intra_threads=threads, compute_type=compute_type
    )
    length = len(tokens)
    times = []
    for i in range(runs + 20):
        started = time.perf_counter()
        translator.translate_batch(
            [tokens], beam_size=4, max_decoding_length=length, min_decoding_length=length - 1, target_prefix=[["<s>"]]
        )
        if i >= 20:
            times.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": round(float(np.percentile(times, 50)), 2), "p99_ms": round(float(np.percentile(times, 99)), 2)}


def checkpoint_latency(args) -> None:
    """CTranslate2 (fp32, int8) on a trained checkpoint: every held-out music query, one at a time, beam 4."""
    from search_build.export.spell_ct2 import converted_model
    from search_build.training.spell_tokenizer import build_char_tokenizer
    from search_tools.spell_eval import read_pairs

    tokenizer = build_char_tokenizer()
    queries = [q for q, _ in read_pairs(Path(__file__).parent / "data" / "spell_music_queries.tsv")]
    model_dir = converted_model(args.checkpoint)
    import ctranslate2

    result = {"checkpoint": str(args.checkpoint), "queries": len(queries), "threads": args.threads}
    for compute_type in ("float32", "int8"):
        translator = ctranslate2.Translator(
            str(model_dir), device="cpu", inter_threads=1, intra_threads=args.threads, compute_type=compute_type
        )
        times = []
        for round_ in range(4):
            for query in queries:
                started = time.perf_counter()
                translator.translate_batch(
                    [tokenizer.encode(query).tokens], beam_size=4, max_decoding_length=63, target_prefix=[["<s>"]]
                )
                if round_:  # the first round warms up
                    times.append((time.perf_counter() - started) * 1000)
        result[compute_type] = {
            "p50_ms": round(float(np.percentile(times, 50)), 2),
            "p99_ms": round(float(np.percentile(times, 99)), 2),
        }
        print(
            f"CTranslate2 {compute_type}, beam 4, batch 1, {args.threads} thread(s): "
            f"p50 {result[compute_type]['p50_ms']} ms, p99 {result[compute_type]['p99_ms']} ms",
            flush=True,
        )
    out = args.out.with_name("spell_checkpoint_latency.json")
    out.write_text(json.dumps(result, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/spell_shapes.json"))
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="instead: time this trained checkpoint on the held-out music queries (beam 4, batch 1)",
    )
    args = parser.parse_args()
    if args.checkpoint:
        return checkpoint_latency(args)

    import ctranslate2
    import torch
    from transformers import BartForConditionalGeneration

    from search_build.training.spell_data import build_dataset
    from search_build.training.spell_tokenizer import build_char_tokenizer, save_bart_tokenizer
    from search_build.training.spell_train import MAX_POSITIONS, autocast_dtype, speed_check, tiny_bart_config

    torch.set_num_threads(args.threads)
    tokenizer = build_char_tokenizer()
    tokens = tokenizer.encode(QUERY).tokens
    dataset = build_dataset()
    rows = []
    for d_model, encoder_layers, decoder_layers in SHAPES:
        config = tiny_bart_config(
            tokenizer.get_vocab_size(), d_model=d_model, layers=encoder_layers, decoder_layers=decoder_layers
        )
        model = BartForConditionalGeneration(config).eval()
        row = {
            "d_model": d_model,
            "encoder_layers": encoder_layers,
            "decoder_layers": decoder_layers,
            "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        }
        with tempfile.TemporaryDirectory() as tmp:
            hf_dir, ct2_dir = Path(tmp) / "hf", Path(tmp) / "ct2"
            model.save_pretrained(hf_dir)
            save_bart_tokenizer(hf_dir, MAX_POSITIONS)
            config_file = hf_dir / "config.json"
            patched = json.loads(config_file.read_text())
            patched["normalize_before"] = False  # CTranslate2's BART loader reads it; transformers 5 omits it
            config_file.write_text(json.dumps(patched))
            ctranslate2.converters.TransformersConverter(str(hf_dir)).convert(str(ct2_dir), force=True)
            for compute_type in ("float32", "int8"):
                row[f"ct2_{compute_type}"] = ct2_latency(ct2_dir, tokens, compute_type, args.threads)
        speed = speed_check(config, tokenizer, dataset, torch.device("cpu"), 256, autocast_dtype(torch.device("cpu")))
        row["train_fp32_b32_samples_per_s"] = speed[0]["samples_per_s"]
        row["train_mixed_b256_samples_per_s"] = speed[1]["samples_per_s"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(
        "\n| d_model | enc+dec layers | params (M) | CT2 fp32 p50 / p99 ms | CT2 int8 p50 / p99 ms | "
        "train samples/s fp32 b32 | mixed b256 |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['d_model']} | {r['encoder_layers']}+{r['decoder_layers']} | {r['parameters_m']} | "
            f"{r['ct2_float32']['p50_ms']} / {r['ct2_float32']['p99_ms']} | {r['ct2_int8']['p50_ms']} / "
            f"{r['ct2_int8']['p99_ms']} | {r['train_fp32_b32_samples_per_s']} | {r['train_mixed_b256_samples_per_s']} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"query": QUERY, "threads": args.threads, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
