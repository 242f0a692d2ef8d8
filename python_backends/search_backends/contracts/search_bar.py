"""Every name of the catalog_search and search_bar pipelines, defined once.

The index builder (``search_build.catalog.indexing``), the pipeline spec (``search_build.pipelines.search_bar``),
the adapters, the CLI and the tests all read these; nothing else spells them.
"""

from __future__ import annotations

from . import product_search, query_embedding, spell_correct

# Models.
CATALOG_SEARCH = "catalog_search"
SEARCH_BAR = "search_bar"
# Stage entries search_bar calls through BLS (each stays callable on its own).
SPELL_ENTRY, INTENT_ENTRY = spell_correct.SPELL_CORRECT, product_search.INTENT
EMBEDDING_ENTRY = query_embedding.QUERY_EMBEDDING

# catalog_search tensors.
EMBEDDING = query_embedding.EMBEDDING  # FP32 [dim]: an L2-normalised query vector (query_embedding's output)
TOP_K = product_search.TOP_K  # INT32 [1], optional: results per row, the same for every row of a request
ITEM_IDS = "ITEM_IDS"  # BYTES [k]
ITEM_TITLES = "ITEM_TITLES"  # BYTES [k]
ITEM_FIELDS = "ITEM_FIELDS"  # BYTES [k]: the item's extra catalog fields as a JSON object
SCORES = "SCORES"  # FP32 [k]: inner product = cosine similarity, best first

# search_bar tensors (besides TEXT, TOP_K and the four result tensors above).
TEXT = query_embedding.TEXT
CORRECT_SPELLING = "CORRECT_SPELLING"  # BOOL [1], optional, default true
DETECT_INTENT = "DETECT_INTENT"  # BOOL [1], optional, default true
CORRECTED = spell_correct.CORRECTED  # BYTES [1]: the text that was searched
INTENT = "INTENT"  # BYTES [1]: intent label ("" when DETECT_INTENT is false)
INTENT_PROBABILITIES = "INTENT_PROBABILITIES"  # FP32 [classes] (zeros when DETECT_INTENT is false)

# Stage tensors read by search_bar.
SPELL_INPUT, SPELL_OUTPUT, SPELL_NUM_BEAMS = spell_correct.TEXT, spell_correct.CORRECTED, spell_correct.NUM_BEAMS
INTENT_INPUT, INTENT_LABEL, INTENT_PROBS = product_search.TEXT, product_search.LABEL, product_search.PROBABILITIES
EMBEDDING_INPUT, EMBEDDING_OUTPUT = query_embedding.TEXT, query_embedding.EMBEDDING

DEFAULT_TOP_K = 10
MAX_TOP_K = 100  # bounds the work one request can ask for

# Where a padded result row has no item (an approximate index may return fewer than k).
MISSING_ID = ""
MISSING_SCORE = float("-inf")

# Files under the catalog_search version folder.
CATALOG_DIR = "catalog"
MANIFEST_FILE = "catalog.json"
INDEX_FILE = "index.faiss"
ITEMS_FILE = "items.parquet"

# Manifest keys and values.
BACKEND_FAISS, BACKEND_MILVUS = "faiss", "milvus"
BACKENDS = (BACKEND_FAISS, BACKEND_MILVUS)
INDEX_FLAT, INDEX_HNSW = "flat", "hnsw"
INDEX_KINDS = ("auto", INDEX_FLAT, INDEX_HNSW)
# Exact search up to this many items; HNSW above (one exact query over 50k x 384 floats is ~1 ms here).
EXACT_MAX_ITEMS = 50_000
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 200, 128

# Catalog file columns and Milvus fields.
ID_FIELD, TITLE_FIELD, FIELDS_FIELD, VECTOR_FIELD = "id", "title", "fields", "vector"
MAX_ID_CHARS, MAX_TITLE_CHARS, MAX_FIELDS_CHARS = 512, 2048, 16384
MILVUS_TOKEN_ENV = "MILVUS_TOKEN"  # credentials never go into the repository

# catalog_search model parameters.
PARAM_CATALOG_DIR = "catalog_dir"
PARAM_SEARCH_THREADS = "search_threads"
# search_bar model parameters.
PARAM_SPELL_NUM_BEAMS = "spell_num_beams"  # 0: the spell checkpoint's generation config (beam 4)
# Greedy in the search bar: with the guard and learnt repair it fixed as many held-out misspellings as beam 4
# (music 81.0% both; real misspellings 84.2% vs 84.5%, correct queries kept 98.8% both) at 1.4-1.7x the speed.
DEFAULT_SPELL_NUM_BEAMS = 1
# How search_bar runs its stages: "bls" calls the stage models; "inprocess" (the local target's default) runs the
# stage models' own files and settings in its stub, read from their folders and configs in the same repository.
PARAM_STAGES = "stages"
STAGES_BLS, STAGES_INPROCESS = "bls", "inprocess"
STAGE_MODES = (STAGES_BLS, STAGES_INPROCESS)
# With "inprocess": the repository models whose files each stage runs.
PARAM_SPELL_MODEL, PARAM_INTENT_MODEL = "spell_model", "intent_model"
PARAM_EMBEDDING_MODEL, PARAM_CATALOG_MODEL = "embedding_model", "catalog_model"
