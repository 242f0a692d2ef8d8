"""In-process ONNX Runtime chain for the product models: shared encoder, then a head.

Mirrors the Triton ensembles (``query_intent`` and ``product_duplicate``) without a server, for
offline scoring, throughput baselines and the parity tests. An export directory holds:
the three graphs, ``tokenizer.json`` and the heads' config (labels, max lengths); their names are in
``search_backends.contracts.product_search``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from .contracts.product_search import (
    CONFIG_FILE,
    DEFAULT_MAX_TYPE_TOKENS,
    DUPLICATE_HEAD_FILE,
    ENCODER_FILE,
    IDS,
    INTENT_HEAD_FILE,
    POOLED_EMBEDDING,
)
from .graph_engines import ENGINE_ONNXRUNTIME, GraphEngine, OnnxRuntimeEngine, open_engine
from .heads import IntentPredictions, classify, duplicate_probability
from .onnx_runner import make_session
from .pair_encoding import PairEncoder
from .tokenization import BatchTokenizer, EncodedBatch


class ProductOnnxModels:
    """``engine``: the encoder's engine (graph_engines: onnxruntime or openvino; the heads are tiny and stay on
    ONNX Runtime). ``providers`` applies to ONNX Runtime sessions."""

    def __init__(
        self,
        export_dir: str | Path,
        intra_op_threads: int = 0,
        providers: Sequence[str] | None = None,
        engine: str = ENGINE_ONNXRUNTIME,
        precision: str = "fp32",
    ):
        export_dir = Path(export_dir)
        self.config = json.loads((export_dir / CONFIG_FILE).read_text())
        if engine == ENGINE_ONNXRUNTIME:
            self.encoder: GraphEngine = OnnxRuntimeEngine(
                export_dir / ENCODER_FILE, intra_op_threads, precision, providers=providers
            )
        else:
            self.encoder = open_engine(engine, export_dir / ENCODER_FILE, threads=intra_op_threads, precision=precision)
        self.intent_head = make_session(export_dir / INTENT_HEAD_FILE, intra_op_threads, providers=providers)
        self.duplicate_head = make_session(export_dir / DUPLICATE_HEAD_FILE, intra_op_threads, providers=providers)
        self.queries = BatchTokenizer(export_dir, max_length=self.config["intent"]["max_length"])
        dup = self.config["duplicate"]
        self.pairs = PairEncoder.from_dir(
            export_dir,
            max_length=dup["max_length"],
            max_type_tokens=dup.get("max_type_tokens", DEFAULT_MAX_TYPE_TOKENS),
            field_separator=dup.get("field_separator", "|"),
        )
        self.id2label = self.config["intent"]["id2label"]

    def embed(self, batch: EncodedBatch) -> np.ndarray:
        feeds = {name: getattr(batch, name) for name in IDS}
        return dict(zip(self.encoder.output_names, self.encoder.infer(feeds)))[POOLED_EMBEDDING]

    def intent_logits(self, embedding: np.ndarray) -> np.ndarray:
        return self.intent_head.run(None, {POOLED_EMBEDDING: embedding})[0]

    def duplicate_logits(self, embedding: np.ndarray) -> np.ndarray:
        return self.duplicate_head.run(None, {POOLED_EMBEDDING: embedding})[0]

    def classify_queries(self, texts: Sequence[str], top_k: int = 1) -> IntentPredictions:
        return classify(self.intent_logits(self.embed(self.queries.encode(list(texts)))), self.id2label, top_k)

    def score_pairs(self, a_type, a_title, a_description, b_type, b_title, b_description) -> np.ndarray:
        """P(duplicate) float32 [B] for six equally long field columns (None or "" = missing)."""
        batch = self.pairs.encode(a_type, a_title, a_description, b_type, b_title, b_description)
        return duplicate_probability(self.duplicate_logits(self.embed(batch)))
