"""Export any `BartForConditionalGeneration` checkpoint to two ONNX graphs for cached incremental decoding.

    searchbar export spell --model models/spell_bart --out artifacts/spell_onnx

Both graphs are FP32, opset 18, exported with `torch.onnx.export(..., dynamo=True)`. L = decoder layers,
H = decoder attention heads, Dh = d_model / H, V = vocab size.

spell_encoder.onnx (run once per request batch)
    inputs   input_ids              int64 [batch, encoder_sequence]
             attention_mask         int64 [batch, encoder_sequence]   1 = token, 0 = padding
    outputs  encoder_hidden_states  float [batch, encoder_sequence, d_model]
             cross_key_{i}          float [batch, H, encoder_sequence, Dh]   i = 0..L-1, decoder layer i's
             cross_value_{i}        float [batch, H, encoder_sequence, Dh]   cross-attention K/V, projected once

spell_decoder.onnx (one decoding step for every live sequence)
    inputs   decoder_input_ids      int64 [batch, 1]     the last token of each sequence
             encoder_attention_mask int64 [batch, encoder_sequence]
             past_key_{i}           float [batch, H, past_sequence, Dh]   self-attention cache of layer i
             past_value_{i}         float [batch, H, past_sequence, Dh]
             cross_key_{i}          float [batch, H, encoder_sequence, Dh]   from the encoder graph
             cross_value_{i}        float [batch, H, encoder_sequence, Dh]
    outputs  logits                 float [batch, V]   next-token logits (incl. final_logits_bias)
             present_key_{i}        float [batch, H, past_sequence + 1, Dh]
             present_value_{i}      float [batch, H, past_sequence + 1, Dh]

The decoder position is past_sequence (all rows of a batch are at the same step). The first step feeds
past_sequence = 0, i.e. empty [batch, H, 0, Dh] caches; ONNX Runtime handles the zero-length concat.

Beside the graphs the export copies config.json, generation_config.json and the tokenizer files, so the folder
is everything serving needs. `check_export` compares every graph with the PyTorch model (see its docstring).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import nn

from search_backends.contracts.spell_correct import (
    ATTENTION_MASK,
    CROSS,
    DECODER_FILE,
    DECODER_INPUT_IDS,
    ENCODER_ATTENTION_MASK,
    ENCODER_FILE,
    ENCODER_HIDDEN_STATES,
    INPUT_IDS,
    KEY,
    LOGITS,
    PAST,
    PRESENT,
    SERVING_FILES,
    VALUE,
    GraphNames,
    kv_name,
)

OPSET = 18


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, S, D] -> [B, H, S, Dh]"""
    b, s, d = x.shape
    return x.view(b, s, heads, d // heads).transpose(1, 2)


def attend(attn, query_states, keys, values, additive_mask=None) -> torch.Tensor:
    """BART attention given projected K/V: softmax(q k^T * scale + mask) v, then out_proj. attn: a BartAttention."""
    q = split_heads(attn.q_proj(query_states), attn.num_heads)
    scores = torch.matmul(q, keys.transpose(-1, -2)) * attn.scaling
    if additive_mask is not None:
        scores = scores + additive_mask
    context = torch.matmul(torch.softmax(scores, dim=-1), values)
    b, h, s, dh = context.shape
    return attn.out_proj(context.transpose(1, 2).reshape(b, s, h * dh))


def padding_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, S] 1/0 -> additive [B, 1, 1, S] (0 keeps, dtype-min drops), as HF builds it."""
    keep = attention_mask[:, None, None, :].to(torch.bool)
    return torch.where(keep, torch.zeros((), dtype=dtype), torch.full((), torch.finfo(dtype).min, dtype=dtype))


class EncoderGraph(nn.Module):
    """HF's BART encoder, then each decoder layer's cross-attention K/V projection of its output."""

    def __init__(self, model):
        super().__init__()
        self.encoder = model.get_encoder()
        self.decoder_layers = model.model.decoder.layers

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        outputs = [hidden]
        for layer in self.decoder_layers:
            attn = layer.encoder_attn
            outputs += [
                split_heads(attn.k_proj(hidden), attn.num_heads),
                split_heads(attn.v_proj(hidden), attn.num_heads),
            ]
        return tuple(outputs)


class DecoderStepGraph(nn.Module):
    """One BART decoder step (post-LayerNorm layers) with an explicit self-attention cache, from HF's own modules."""

    def __init__(self, model):
        super().__init__()
        self.decoder = model.model.decoder
        self.lm_head = model.lm_head
        self.register_buffer("final_logits_bias", model.final_logits_bias.detach().clone(), persistent=False)

    def forward(self, decoder_input_ids: torch.Tensor, encoder_attention_mask: torch.Tensor, past: list, cross: list):
        decoder = self.decoder
        past_length = past[0].shape[2]
        embeds = decoder.embed_tokens(decoder_input_ids)
        positions = decoder.embed_positions(decoder_input_ids, past_length)
        hidden = decoder.layernorm_embedding(embeds + positions)
        cross_mask = padding_mask(encoder_attention_mask, hidden.dtype)
        presents = []
        for i, layer in enumerate(decoder.layers):
            self_attn = layer.self_attn
            keys = torch.cat([past[2 * i], split_heads(self_attn.k_proj(hidden), self_attn.num_heads)], dim=2)
            values = torch.cat([past[2 * i + 1], split_heads(self_attn.v_proj(hidden), self_attn.num_heads)], dim=2)
            presents += [keys, values]
            # a single query at the newest position sees the whole cache: no causal mask needed
            hidden = layer.self_attn_layer_norm(hidden + attend(self_attn, hidden, keys, values))
            hidden = layer.encoder_attn_layer_norm(
                hidden + attend(layer.encoder_attn, hidden, cross[2 * i], cross[2 * i + 1], cross_mask)
            )
            hidden = layer.final_layer_norm(hidden + layer.fc2(layer.activation_fn(layer.fc1(hidden))))
        logits = self.lm_head(hidden[:, -1, :]) + self.final_logits_bias
        return (logits, *presents)


def load_model(model_dir: str | Path):
    from transformers import BartForConditionalGeneration

    model = BartForConditionalGeneration.from_pretrained(model_dir, attn_implementation="eager", use_safetensors=True)
    return model.float().eval()


def _dims(config):
    heads = config.decoder_attention_heads
    return config.decoder_layers, heads, config.d_model // heads


def export_encoder(model, path: Path) -> None:
    names = GraphNames(model.config.decoder_layers)
    batch, seq = (
        torch.export.Dim("batch"),
        torch.export.Dim("encoder_sequence", max=model.config.max_position_embeddings),
    )
    ids = torch.randint(4, model.config.vocab_size, (2, 7))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    program = torch.onnx.export(
        EncoderGraph(model).eval(),
        (ids, mask),
        dynamo=True,
        opset_version=OPSET,
        input_names=names.encoder_inputs(),
        output_names=names.encoder_outputs(),
        dynamic_shapes={INPUT_IDS: {0: batch, 1: seq}, ATTENTION_MASK: {0: batch, 1: seq}},
    )
    program.save(str(path), external_data=False)


def export_decoder(model, path: Path) -> None:
    layers, heads, head_dim = _dims(model.config)
    names = GraphNames(layers)
    batch = torch.export.Dim("batch")
    seq = torch.export.Dim("encoder_sequence", max=model.config.max_position_embeddings)
    past_len = torch.export.Dim("past_sequence", max=model.config.max_position_embeddings - 1)
    b, s, t = 2, 7, 3  # distinct sizes >1 so export keeps every axis symbolic
    ids = torch.randint(4, model.config.vocab_size, (b, 1))
    mask = torch.ones((b, s), dtype=torch.long)
    past = [torch.randn(b, heads, t, head_dim) for _ in range(2 * layers)]
    cross = [torch.randn(b, heads, s, head_dim) for _ in range(2 * layers)]
    program = torch.onnx.export(
        DecoderStepGraph(model).eval(),
        (ids, mask, past, cross),
        dynamo=True,
        opset_version=OPSET,
        input_names=names.decoder_inputs(),
        output_names=names.decoder_outputs(),
        dynamic_shapes={
            DECODER_INPUT_IDS: {0: batch},
            ENCODER_ATTENTION_MASK: {0: batch, 1: seq},
            PAST: [{0: batch, 2: past_len}] * (2 * layers),
            CROSS: [{0: batch, 2: seq}] * (2 * layers),
        },
    )
    program.save(str(path), external_data=False)


def export_checkpoint(model_dir: str | Path, out_dir: str | Path) -> Path:
    """Write spell_encoder.onnx, spell_decoder.onnx and the serving side files; returns out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = load_model(model_dir)
    with torch.no_grad():
        export_encoder(model, out / ENCODER_FILE)
        export_decoder(model, out / DECODER_FILE)
    for name in SERVING_FILES:
        if (Path(model_dir) / name).exists():
            shutil.copy2(Path(model_dir) / name, out / name)
    return out


# ---------------------------------------------------------------------------------------------- verification


def random_encoder_inputs(config, batch: int, seq: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random ids with ragged right padding (row 0 full length)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(4, config.vocab_size, size=(batch, seq), dtype=np.int64)
    lengths = np.concatenate([[seq], rng.integers(1, seq + 1, size=batch - 1)])
    mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int64)
    ids[:, -1] = config.eos_token_id if config.eos_token_id is not None else ids[:, -1]
    return np.where(mask == 1, ids, config.pad_token_id), mask


def check_export(
    model_or_dir, onnx_dir, input_ids: np.ndarray, attention_mask: np.ndarray, decoder_steps: int = 6, seed: int = 0
) -> dict[str, float]:
    """Max |ONNX - PyTorch| over every output, on the given encoder inputs.

    References are HF's own code paths, not the export wrappers: the encoder output of `model.get_encoder()`,
    cross K/V and self-attention K/V from the `EncoderDecoderCache` of a cached HF forward, and next-token logits
    of a full, uncached HF forward over the decoder prefix at every step. The decoder prefix is the decoder start
    token followed by random tokens, and the ONNX decoder is chained step by step from an empty cache.
    """
    import onnxruntime as ort

    model = load_model(model_or_dir) if isinstance(model_or_dir, (str, Path)) else model_or_dir.float().eval()
    config = model.config
    layers, _, _ = _dims(config)
    names = GraphNames(layers)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    enc = ort.InferenceSession(str(Path(onnx_dir) / ENCODER_FILE), options, providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(Path(onnx_dir) / DECODER_FILE), options, providers=["CPUExecutionProvider"])

    input_ids = np.asarray(input_ids, dtype=np.int64)
    attention_mask = np.asarray(attention_mask, dtype=np.int64)
    batch = input_ids.shape[0]
    rng = np.random.default_rng(seed)
    start = config.decoder_start_token_id
    prefix = np.concatenate(
        [np.full((batch, 1), start), rng.integers(4, config.vocab_size, size=(batch, decoder_steps - 1))], axis=1
    ).astype(np.int64)

    diffs: dict[str, float] = {}

    def record(name: str, onnx_value: np.ndarray, torch_value: torch.Tensor) -> None:
        assert onnx_value.shape == tuple(torch_value.shape), (name, onnx_value.shape, tuple(torch_value.shape))
        diff = float(np.max(np.abs(onnx_value - torch_value.detach().numpy()))) if onnx_value.size else 0.0
        diffs[name] = max(diffs.get(name, 0.0), diff)

    enc_out = dict(zip(names.encoder_outputs(), enc.run(None, {INPUT_IDS: input_ids, ATTENTION_MASK: attention_mask})))
    ids_t, mask_t = torch.from_numpy(input_ids), torch.from_numpy(attention_mask)
    with torch.no_grad():
        ref_hidden = model.get_encoder()(input_ids=ids_t, attention_mask=mask_t).last_hidden_state
        cached = model(
            input_ids=ids_t, attention_mask=mask_t, decoder_input_ids=torch.from_numpy(prefix), use_cache=True
        )
    keep = torch.from_numpy(attention_mask).bool()[:, None, :, None]  # padded rows of hidden/K/V are don't-care
    record(ENCODER_HIDDEN_STATES, enc_out[ENCODER_HIDDEN_STATES] * keep[:, 0].numpy(), ref_hidden * keep[:, 0])
    cache = cached.past_key_values
    for i in range(layers):
        layer = cache.cross_attention_cache.layers[i]
        record(f"{CROSS}_{KEY}", enc_out[kv_name(CROSS, KEY, i)] * keep.numpy(), layer.keys * keep)
        record(f"{CROSS}_{VALUE}", enc_out[kv_name(CROSS, VALUE, i)] * keep.numpy(), layer.values * keep)

    heads, head_dim = config.decoder_attention_heads, config.d_model // config.decoder_attention_heads
    past = {n: np.zeros((batch, heads, 0, head_dim), np.float32) for n in names.past()}
    for step in range(decoder_steps):
        feed = {DECODER_INPUT_IDS: prefix[:, step : step + 1], ENCODER_ATTENTION_MASK: attention_mask, **past}
        feed.update({n: enc_out[n] for n in names.cross()})
        out = dict(zip(names.decoder_outputs(), dec.run(None, feed)))
        with torch.no_grad():
            full = model(
                input_ids=ids_t,
                attention_mask=mask_t,
                decoder_input_ids=torch.from_numpy(prefix[:, : step + 1]),
                use_cache=False,
            )
        record(LOGITS, out[LOGITS], full.logits[:, -1, :])
        past = {p: out[q] for p, q in zip(names.past(), names.present())}
    for i in range(layers):
        layer = cache.self_attention_cache.layers[i]
        record(f"{PRESENT}_{KEY}", past[kv_name(PAST, KEY, i)], layer.keys)
        record(f"{PRESENT}_{VALUE}", past[kv_name(PAST, VALUE, i)], layer.values)
    return diffs


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True, help="BartForConditionalGeneration checkpoint directory")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--no-check", action="store_true", help="skip the ONNX vs PyTorch comparison")


def run(args) -> None:
    out = export_checkpoint(args.model, args.out)
    print(f"exported {out / ENCODER_FILE} and {out / DECODER_FILE}")
    if not args.no_check:
        config = load_model(args.model).config
        ids, mask = random_encoder_inputs(config, batch=3, seq=min(12, config.max_position_embeddings), seed=0)
        print(json.dumps(check_export(args.model, out, ids, mask), indent=2))


if __name__ == "__main__":
    from search_tools.cli import run_as_main

    run_as_main(__spec__.name)
