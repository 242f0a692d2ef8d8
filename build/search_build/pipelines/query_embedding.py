"""``query_embedding``: text -> L2-normalised sentence vector (music search vector retrieval).

triton-cpu / triton-gpu:
TEXT --query_embedding_tokenize--> input_ids, attention_mask
     --query_embedding_encoder (encoder + mean pooling + L2 norm)--> EMBEDDING
local (the engine is a Python stub there too, so tokenization joins it: one hop, see spec.FusedTokenizer):
TEXT --query_embedding_encoder (tokenizer + encoder + pooling + norm)--> EMBEDDING
"""

from __future__ import annotations

from pathlib import Path

from search_backends.contracts.query_embedding import (
    ATTENTION_MASK,
    EMBEDDING,
    ENCODER,
    INPUT_IDS,
    MAX_LENGTH_PARAMETER,
    PAD_TO_MULTIPLE_PARAMETER,
    QUERY_EMBEDDING,
    SENTENCE_EMBEDDING,
    TEXT,
    TEXT_INPUT_PARAMETER,
    TOKENIZE,
    TOKENIZER_DIR,
    TOKENIZER_DIR_PARAMETER,
)
from search_backends.graph_engines import GRAPH_FILE

from search_build.repository.artifacts import TOKENIZER_FILES, copy_tree_files, fingerprint
from search_build.export.engine_parity import query_feeds
from search_build.export.sentence_checkpoint import SentenceCheckpoint, default_embedding_checkpoint
from search_build.repository.spec import (
    Artifact,
    Batching,
    EngineModel,
    Ensemble,
    FusedTokenizer,
    OptimizationProfile,
    Pipeline,
    PythonModel,
    Step,
    Target,
    TensorSpec,
)
from search_build.pipelines import register

ENSEMBLE = QUERY_EMBEDDING

# Overload policy (docs/reliability.md), one for every pipeline: with ``bounded_queues=True`` every
# dynamically batched stage gets a bounded queue that rejects at once when full (UNAVAILABLE "Exceeds maximum
# queue size"); not only the first stage, since the engine is the slow one and work would pile up behind a
# fast tokenizer. Served latency under overload is then about queue depth / throughput (~1 s here, instead of
# growing without bound). It is OFF by default because Triton 2.51 stalls requests when any queue policy is
# set: in bursts of 8 concurrent requests about half the bursts had a request wait ~500 ms (the batcher's idle
# wake-up) -- 0 of 25 without a policy -- which breaks the p99 budget in normal operation. No queue timeout
# either way: with one, those stalled requests are rejected instead ("Request timeout expired").
ENTRY_QUEUE_SIZE, ENGINE_QUEUE_SIZE = 256, 128  # the engine queue absorbs a burst of 2 x max_batch_size


def _batching(max_queue_delay_us: int, queue_size: int, bounded: bool, shed_wait_ms: int = 0) -> Batching:
    return Batching(
        max_batch_size=64,
        max_queue_delay_us=max_queue_delay_us,
        instance_count=1,
        max_queue_size=queue_size if bounded else 0,
        shed_wait_ms=shed_wait_ms,
    )


@register(ENSEMBLE)
def query_embedding_pipeline(
    checkpoint: str | Path | None = None,
    *,
    target: Target = "local",
    precision: str = "fp32",
    max_length: int = 128,
    tokenizer_batching: Batching | None = None,
    encoder_batching: Batching | None = None,
    bounded_queues: bool = False,
    fuse_tokenizer: bool | None = None,
    shed_wait_ms: int = 0,
) -> Pipeline:
    """``shed_wait_ms`` > 0: the fused entry stage (local target) sheds a request it could not answer within that
    many ms (search_backends.admission)."""
    fuse = target == "local" if fuse_tokenizer is None else fuse_tokenizer
    if fuse and target != "local":
        raise ValueError("fuse_tokenizer: only the local target runs its engines in Python stubs")
    if shed_wait_ms and not fuse:
        raise ValueError("shed_wait_ms: only the local target's fused stage sheds load; shed in front of Triton")
    ck = SentenceCheckpoint.load(checkpoint or default_embedding_checkpoint())
    max_length = min(max_length, ck.max_seq_length)
    key = fingerprint(ck.path, extra=f"embedding|{ck.pooling}|{ck.normalize}")
    ids = TensorSpec(INPUT_IDS, "INT64", (-1,))
    mask = TensorSpec(ATTENTION_MASK, "INT64", (-1,))
    embedding = TensorSpec(SENTENCE_EMBEDDING, "FP32", (ck.embedding_dim,))

    def export(dest: Path) -> None:
        from search_build.export.embedding_export import export_embedding_encoder

        export_embedding_encoder(ck.path, dest)

    text = TensorSpec(TEXT, "STRING", (1,))
    tokenizer_files = Artifact(TOKENIZER_DIR, copy_tree_files(ck.transformer_dir, TOKENIZER_FILES))
    tokenizer_parameters = {MAX_LENGTH_PARAMETER: str(max_length), PAD_TO_MULTIPLE_PARAMETER: "8"}
    tokenize = PythonModel(
        name=TOKENIZE,
        adapter="text_tokenizer",
        inputs=(text,),
        outputs=(ids, mask),
        batching=tokenizer_batching or _batching(100, ENTRY_QUEUE_SIZE, bounded_queues),
        parameters={TOKENIZER_DIR_PARAMETER: TOKENIZER_DIR, **tokenizer_parameters, TEXT_INPUT_PARAMETER: TEXT},
        artifacts=(tokenizer_files,),
    )
    # Fused, the encoder is the entry stage: no queue delay (at concurrency 1 a 500 us delay is 500 us of latency;
    # under load batches form while the instance is busy) and the engine's queue bound: it is the slow stage, and
    # a deeper queue only makes the requests it serves under overload wait longer (queue depth / throughput).
    encoder_default = (
        _batching(0, ENGINE_QUEUE_SIZE, bounded_queues, shed_wait_ms)
        if fuse
        else _batching(500, ENGINE_QUEUE_SIZE, bounded_queues)
    )
    max_batch = (encoder_batching or encoder_default).max_batch_size
    import json

    from search_backends.engine_inputs import bert_input_ranges
    from search_backends.tokenization import round_up

    ranges = bert_input_ranges(json.loads((ck.transformer_dir / "config.json").read_text(encoding="utf-8")))
    encoder = EngineModel(
        name=ENCODER,
        # The tokenizer pads rows to a multiple of 8, up to max_length rounded up: the longest a direct call may send.
        max_sequence_length=round_up(max_length, 8),
        value_ranges={t.name: ranges[t.name] for t in (ids, mask)},
        parity_feeds=query_feeds(ck.transformer_dir, max_length, (ids.name, mask.name)),
        tokenizer=FusedTokenizer(text, tokenizer_files, tokenizer_parameters) if fuse else None,
        onnx=Artifact(GRAPH_FILE, export, cache_key=f"{ENCODER}-{key}"),
        inputs=(ids, mask),
        outputs=(embedding,),
        batching=encoder_batching or encoder_default,
        profiles=(
            OptimizationProfile(
                min={INPUT_IDS: (1, 1), ATTENTION_MASK: (1, 1)},
                opt={INPUT_IDS: (max(1, max_batch // 2), 16), ATTENTION_MASK: (max(1, max_batch // 2), 16)},
                max={INPUT_IDS: (max_batch, max_length), ATTENTION_MASK: (max_batch, max_length)},
            ),
        ),
    )
    encode = Step(ENCODER, {INPUT_IDS: INPUT_IDS, ATTENTION_MASK: ATTENTION_MASK}, {SENTENCE_EMBEDDING: EMBEDDING})
    steps = (
        (Step(ENCODER, {TEXT: TEXT}, encode.output_map),)
        if fuse
        else (Step(TOKENIZE, {TEXT: TEXT}, {INPUT_IDS: INPUT_IDS, ATTENTION_MASK: ATTENTION_MASK}), encode)
    )
    ensemble = Ensemble(
        name=ENSEMBLE,
        inputs=(text,),
        outputs=(TensorSpec(EMBEDDING, "FP32", (ck.embedding_dim,)),),
        steps=steps,
        max_batch_size=64,
    )
    models = (encoder, ensemble) if fuse else (tokenize, encoder, ensemble)
    return Pipeline(ENSEMBLE, "text -> normalised sentence embedding", models, ENSEMBLE)
