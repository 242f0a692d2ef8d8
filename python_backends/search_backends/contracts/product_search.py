"""Every name of the product-search pipelines (query_intent, product_duplicate), defined once.

One BERT backbone (``product_encoder``) with two heads; the spec is ``search_build.pipelines.product_search``,
the exporter ``search_build.export.product_export``, the in-process chain ``search_backends.product_onnx``.
"""

from __future__ import annotations

from .query_embedding import ATTENTION_MASK, INPUT_IDS, TEXT  # noqa: F401 - shared names, re-exported

# Models.
ENCODER = "product_encoder"  # the shared backbone, served once
INTENT = "query_intent"
INTENT_TOKENIZE, INTENT_HEAD = "query_intent_tokenize", "query_intent_head"
INTENT_ENCODER = "query_intent_encoder"  # the local target's fused tokenizer + encoder + head
DUPLICATE = "product_duplicate"
PAIR_TOKENIZE, DUPLICATE_HEAD = "product_pair_tokenize", "product_duplicate_head"

# product_duplicate's inputs: the text fields of products A and B (BYTES [1] each; a missing one counts as empty).
PAIR_FIELDS = ("A_TYPE", "A_TITLE", "A_DESCRIPTION", "B_TYPE", "B_TITLE", "B_DESCRIPTION")
A_TYPE, A_TITLE, A_DESCRIPTION, B_TYPE, B_TITLE, B_DESCRIPTION = PAIR_FIELDS
FIELDS_PER_PRODUCT = 3
SCORE = "SCORE"  # FP32 [1]: probability that A and B are the same product

# Token ids into the backbone, and its output. Not "embedding": the dynamo exporter already gives that name to
# the word-embedding Gather.
TOKEN_TYPE_IDS = "token_type_ids"
IDS = (INPUT_IDS, ATTENTION_MASK, TOKEN_TYPE_IDS)
POOLED_EMBEDDING = "pooled_embedding"
# The heads' graph outputs (logits; the adapters turn them into probabilities).
INTENT_LOGITS, DUPLICATE_LOGIT = "logits", "logit"

# query_intent's inputs (besides TEXT) and outputs.
TOP_K = "TOP_K"  # INT32 [1], optional: labels in TOP_LABELS / TOP_PROBABILITIES
LABEL = "LABEL"  # BYTES [1]: the most likely intent
PROBABILITIES = "PROBABILITIES"  # FP32 [classes]
TOP_LABELS = "TOP_LABELS"  # BYTES [k]
TOP_PROBABILITIES = "TOP_PROBABILITIES"  # FP32 [k]
INTENT_OUTPUTS = (LABEL, PROBABILITIES, TOP_LABELS, TOP_PROBABILITIES)

# Files of one export (search_build.export.product_export), read by search_backends.product_onnx.
ENCODER_FILE = "product_encoder.onnx"
INTENT_HEAD_FILE = "query_intent_head.onnx"
DUPLICATE_HEAD_FILE = "product_duplicate_head.onnx"
CONFIG_FILE = "product_models.json"  # the heads' config: labels, max lengths, pair settings
# Files of the head models' version folders.
HEAD_FILE = "head.onnx"
LABELS_FILE = "labels.json"

# Model parameters (written by the spec, read by the adapters); the tokenizer stubs' own are in query_embedding.
HEAD_FILE_PARAMETER = "head_file"
LABELS_FILE_PARAMETER = "labels_file"
TOP_K_PARAMETER = "top_k"  # default k when a request sends no TOP_K
MAX_TYPE_TOKENS_PARAMETER = "max_type_tokens"
DEFAULT_TOP_K, DEFAULT_MAX_TYPE_TOKENS = 3, 16
