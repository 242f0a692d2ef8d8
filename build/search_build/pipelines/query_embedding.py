"""``query_embedding``: text -> L2-normalised sentence vector (music search vector retrieval).

    TEXT --query_embedding_tokenize--> input_ids, attention_mask
         --query_embedding_encoder (encoder + mean pooling + L2 norm)--> EMBEDDING
"""
from __future__ import annotations

from pathlib import Path

from ..artifacts import TOKENIZER_FILES, copy_tree_files, fingerprint
from ..sentence_checkpoint import SentenceCheckpoint, default_embedding_checkpoint
from ..spec import Artifact, Batching, EngineModel, Ensemble, OptimizationProfile, Pipeline, PythonModel, Step, TensorSpec
from . import register

TOKENIZE, ENCODER, ENSEMBLE = "query_embedding_tokenize", "query_embedding_encoder", "query_embedding"

# Overload policy (docs/reliability.md): bounded queues that reject at once when full, and a queue
# timeout that rejects (UNAVAILABLE) rather than serves late. Every stage of a pipeline is bounded,
# not only the first: the engine is the slow stage, so an unbounded engine queue would let work pile
# up behind a fast tokenizer. Served latency stays under ~2 x timeout + compute.
QUEUE_TIMEOUT_US = 250_000
ENTRY_TOKENIZER_BATCHING = Batching(max_batch_size=64, max_queue_delay_us=100, instance_count=1,
                                    max_queue_size=256, queue_timeout_us=QUEUE_TIMEOUT_US)
ENCODER_BATCHING = Batching(max_batch_size=64, max_queue_delay_us=500, instance_count=1,
                            max_queue_size=128, queue_timeout_us=QUEUE_TIMEOUT_US)


@register(ENSEMBLE)
def query_embedding_pipeline(checkpoint: str | Path | None = None, *, max_length: int = 128,
                             tokenizer_batching: Batching | None = None,
                             encoder_batching: Batching | None = None) -> Pipeline:
    ck = SentenceCheckpoint.load(checkpoint or default_embedding_checkpoint())
    max_length = min(max_length, ck.max_seq_length)
    key = fingerprint(ck.path, extra=f"embedding|{ck.pooling}|{ck.normalize}")
    ids = TensorSpec("input_ids", "INT64", (-1,))
    mask = TensorSpec("attention_mask", "INT64", (-1,))
    embedding = TensorSpec("sentence_embedding", "FP32", (ck.embedding_dim,))

    def export(dest: Path) -> None:
        from ..embedding_export import export_embedding_encoder
        export_embedding_encoder(ck.path, dest)

    tokenize = PythonModel(
        name=TOKENIZE, adapter="text_tokenizer",
        inputs=(TensorSpec("TEXT", "STRING", (1,)),), outputs=(ids, mask),
        batching=tokenizer_batching or ENTRY_TOKENIZER_BATCHING,
        parameters={"tokenizer_dir": "tokenizer", "max_length": str(max_length), "pad_to_multiple_of": "8",
                    "text_input": "TEXT"},
        artifacts=(Artifact("tokenizer", copy_tree_files(ck.transformer_dir, TOKENIZER_FILES)),),
    )
    max_batch = (encoder_batching or ENCODER_BATCHING).max_batch_size
    encoder = EngineModel(
        name=ENCODER,
        onnx=Artifact("model.onnx", export, cache_key=f"{ENCODER}-{key}"),
        inputs=(ids, mask), outputs=(embedding,),
        batching=encoder_batching or ENCODER_BATCHING,
        profiles=(OptimizationProfile(
            min={"input_ids": (1, 1), "attention_mask": (1, 1)},
            opt={"input_ids": (max(1, max_batch // 2), 16), "attention_mask": (max(1, max_batch // 2), 16)},
            max={"input_ids": (max_batch, max_length), "attention_mask": (max_batch, max_length)}),),
    )
    ensemble = Ensemble(
        name=ENSEMBLE,
        inputs=(TensorSpec("TEXT", "STRING", (1,)),),
        outputs=(TensorSpec("EMBEDDING", "FP32", (ck.embedding_dim,)),),
        steps=(Step(TOKENIZE, {"TEXT": "TEXT"}, {"input_ids": "input_ids", "attention_mask": "attention_mask"}),
               Step(ENCODER, {"input_ids": "input_ids", "attention_mask": "attention_mask"},
                    {"sentence_embedding": "EMBEDDING"})),
        max_batch_size=64,
    )
    return Pipeline(ENSEMBLE, "text -> normalised sentence embedding", (tokenize, encoder, ensemble), ENSEMBLE)
