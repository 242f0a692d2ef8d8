"""Every name of the query_embedding pipeline, defined once; the text and token names the other pipelines share.

Imported by the pipeline spec (``search_build.pipelines.query_embedding``), the exporter
(``search_build.export.embedding_export``), the tokenizer/encoder adapters, the tools and the tests.
"""

from __future__ import annotations

# Models.
QUERY_EMBEDDING = "query_embedding"  # the ensemble clients call
TOKENIZE = "query_embedding_tokenize"
ENCODER = "query_embedding_encoder"  # encoder + pooling + L2 norm (on the local target also the tokenizer)

# Tensors. TEXT and the token ids are shared by every text pipeline (they import them from here).
TEXT = "TEXT"  # BYTES [1]: one query
EMBEDDING = "EMBEDDING"  # FP32 [dim]: the L2-normalised sentence vector (the ensemble's output)
INPUT_IDS, ATTENTION_MASK = "input_ids", "attention_mask"
TOKEN_IDS = (INPUT_IDS, ATTENTION_MASK)
SENTENCE_EMBEDDING = "sentence_embedding"  # the exported graph's output, renamed EMBEDDING by the ensemble

TOKENIZER_DIR = "tokenizer"  # a tokenizer stub's tokenizer files, in its version folder

# Model parameters of the tokenizer stubs (text_tokenizer, text_encoder, pair_tokenizer): written by the specs,
# read by the adapters.
TOKENIZER_DIR_PARAMETER = "tokenizer_dir"
MAX_LENGTH_PARAMETER = "max_length"  # tokens per row, special tokens included
PAD_TO_MULTIPLE_PARAMETER = "pad_to_multiple_of"
TEXT_INPUT_PARAMETER = "text_input"  # the name of the BYTES input to tokenize
DEFAULT_MAX_LENGTH, DEFAULT_PAD_TO_MULTIPLE = 128, 8
