"""``catalog_search`` (query vector -> top-k catalog items) and ``search_bar`` (the whole bar in one call).

    catalog_search: EMBEDDING (+ TOP_K) --FAISS index / Milvus collection--> ITEM_IDS, ITEM_TITLES, ITEM_FIELDS, SCORES

    search_bar (async BLS): TEXT (+ TOP_K, CORRECT_SPELLING, DETECT_INTENT)
        --spell_correct--> CORRECTED --+--query_intent--> INTENT, INTENT_PROBABILITIES
                                       +--query_embedding--> vector --catalog_search--> ITEM_* , SCORES

search_bar's repository holds every stage pipeline too, so each stays callable on its own.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from search_backends.contracts import search_bar as C

from search_build.repository.spec import Artifact, Batching, EngineModel, Pipeline, PythonModel, Target, TensorSpec
from search_build.pipelines import build_pipeline, register
from search_build.pipelines.query_embedding import ENGINE_QUEUE_SIZE, ENTRY_QUEUE_SIZE

DEMO_CATALOG_KEY = "dbpedia-demo-v1"
CATALOG_ENV = "SEARCHBAR_CATALOG"  # default catalog file when a build names none (else the demo catalog)


def _results(k: int = -1) -> tuple[TensorSpec, ...]:
    return (
        TensorSpec(C.ITEM_IDS, "STRING", (k,)),
        TensorSpec(C.ITEM_TITLES, "STRING", (k,)),
        TensorSpec(C.ITEM_FIELDS, "STRING", (k,)),
        TensorSpec(C.SCORES, "FP32", (k,)),
    )


def _index_settings(backend: str, index_kind: str, milvus_uri: str | None, milvus_collection: str | None):
    from search_build.catalog.indexing import IndexSettings

    return IndexSettings(
        backend=backend,
        kind=index_kind,
        milvus_uri=milvus_uri,
        milvus_collection=milvus_collection or IndexSettings.milvus_collection,
    )  # it validates


@register(C.CATALOG_SEARCH)
def catalog_search_pipeline(
    checkpoint: str | Path | None = None,
    *,
    target: Target = "local",
    precision: str = "fp32",
    catalog: str | Path | None = None,
    catalog_backend: str = C.BACKEND_FAISS,
    index_kind: str = "auto",
    milvus_uri: str | None = None,
    milvus_collection: str | None = None,
    batching: Batching | None = None,
    bounded_queues: bool = False,
) -> Pipeline:
    import os

    from search_build.repository.artifacts import file_sha256

    catalog = catalog or os.environ.get(CATALOG_ENV) or None
    settings = _index_settings(catalog_backend, index_kind, milvus_uri, milvus_collection)
    embedding = build_pipeline(
        C.EMBEDDING_ENTRY, target=target, precision=precision, **({"checkpoint": checkpoint} if checkpoint else {})
    )
    dim = embedding.model(C.EMBEDDING_ENTRY).outputs[0].dims[0]
    catalog_key = DEMO_CATALOG_KEY if catalog is None else file_sha256(catalog)[:20]
    encoder_key = next(m.onnx.cache_key for m in embedding.models if hasattr(m, "onnx"))

    def build(dest: Path) -> None:
        from search_build.catalog.indexing import build_catalog
        from search_build.catalog.items import demo_catalog, read_catalog

        build_catalog(dest, read_catalog(catalog or demo_catalog()), embedding, settings)

    # A FAISS folder is cached by (catalog bytes, encoder graph, index settings); a Milvus collection lives in
    # Milvus and is (re)filled on every build.
    cache_key = (
        f"catalog-{catalog_key}-{encoder_key}-{settings.key().replace('|', '-')}"
        if catalog_backend == C.BACKEND_FAISS
        else None
    )
    model = PythonModel(
        C.CATALOG_SEARCH,
        "catalog_search",
        (TensorSpec(C.EMBEDDING, "FP32", (dim,)), TensorSpec(C.TOP_K, "INT32", (1,), optional=True)),
        _results(),
        batching=batching
        or Batching(max_batch_size=64, max_queue_delay_us=0, max_queue_size=ENGINE_QUEUE_SIZE if bounded_queues else 0),
        parameters={C.PARAM_CATALOG_DIR: C.CATALOG_DIR, C.PARAM_SEARCH_THREADS: "1"},
        artifacts=(Artifact(C.CATALOG_DIR, build, cache_key=cache_key),),
    )
    return Pipeline(C.CATALOG_SEARCH, "query embedding -> top-k catalog items", (model,), C.CATALOG_SEARCH)


def _in_process_models(spell: Pipeline, intent: Pipeline, embedding: Pipeline) -> dict[str, str] | None:
    """The models whose files an in-process search bar runs, by parameter; None when a stage is not one stub
    running its engine itself (another target's engines, or the spell stage's bls mode)."""
    spell_stub = next((m for m in spell.models if getattr(m, "adapter", None) == "spell_corrector"), None)
    intent_stub = next((m for m in intent.models if isinstance(m, EngineModel) and m.head is not None), None)
    embedding_stub = next((m for m in embedding.models if isinstance(m, EngineModel) and m.tokenizer), None)
    if spell_stub is None or intent_stub is None or embedding_stub is None:
        return None
    return {
        C.PARAM_SPELL_MODEL: spell_stub.name,
        C.PARAM_INTENT_MODEL: intent_stub.name,
        C.PARAM_EMBEDDING_MODEL: embedding_stub.name,
        C.PARAM_CATALOG_MODEL: C.CATALOG_SEARCH,
    }


def _bar_batching(in_process: bool, bounded_queues: bool) -> Batching:
    queue = ENTRY_QUEUE_SIZE if bounded_queues else 0
    if in_process:
        # Two instances of one engine thread each on 2 cores: one batch's single-threaded parts (text codec,
        # guard, small-batch engine calls) overlap the other's, which two threads inside one batch would not.
        return Batching(max_batch_size=64, max_queue_delay_us=100, instance_count=2, max_queue_size=queue)
    # Several instances: the Python backend (2.51) runs a non-decoupled model's async execute to completion before
    # the next batch, so one instance would serialise requests while it waits on BLS calls. Each instance is a
    # light stub that mostly waits; 4 keeps the stages below busy on this CPU.
    return Batching(max_batch_size=64, max_queue_delay_us=100, instance_count=4, max_queue_size=queue)


@register(C.SEARCH_BAR)
def search_bar_pipeline(
    checkpoint: str | Path | None = None,
    *,
    target: Target = "local",
    precision: str = "fp32",
    spell_engine: str | None = None,
    spell_num_beams: int = C.DEFAULT_SPELL_NUM_BEAMS,
    stages: str | None = None,
    batching: Batching | None = None,
    bounded_queues: bool = False,
    shed_wait_ms: int = 0,
    **catalog_options,
) -> Pipeline:
    """``stages``: "inprocess" runs every stage's engine in the search_bar stub, from the stage models' own files
    and settings (the default where every stage is one stub running its engine: the local target); "bls" calls
    the stage models (the default elsewhere: their engines are Triton backends). ``shed_wait_ms`` > 0 (in-process
    only): the bar sheds a request it could not answer within that many ms (search_backends.admission)."""
    if stages not in (None, *C.STAGE_MODES):
        raise ValueError(f"stages must be one of {', '.join(C.STAGE_MODES)}, got {stages!r}")
    spell = build_pipeline(
        C.SPELL_ENTRY,
        target=target,
        precision=precision,
        bounded_queues=bounded_queues,
        **({"engine_mode": spell_engine} if spell_engine else {}),
    )
    intent = build_pipeline(C.INTENT_ENTRY, target=target, precision=precision, bounded_queues=bounded_queues)
    embedding = build_pipeline(
        C.EMBEDDING_ENTRY,
        target=target,
        precision=precision,
        bounded_queues=bounded_queues,
        **({"checkpoint": checkpoint} if checkpoint else {}),
    )
    search = build_pipeline(
        C.CATALOG_SEARCH,
        target=target,
        precision=precision,
        checkpoint=checkpoint,
        bounded_queues=bounded_queues,
        **catalog_options,
    )
    classes = next(t for t in intent.model(C.INTENT_ENTRY).outputs if t.name == C.INTENT_PROBS).dims[0]
    in_process = _in_process_models(spell, intent, embedding) if stages != C.STAGES_BLS else None
    if stages == C.STAGES_INPROCESS and in_process is None:
        raise ValueError(
            f"stages='inprocess' needs every stage as one stub running its engine (target {target!r}, spell engine "
            f"{spell_engine or 'default'!r} is not); use stages='bls'"
        )
    if shed_wait_ms and in_process is None:
        raise ValueError("shed_wait_ms: search_bar sheds load only with its stages in-process (stages='inprocess')")
    bar_batching = batching or _bar_batching(in_process is not None, bounded_queues)
    bar = PythonModel(
        C.SEARCH_BAR,
        "search_bar",
        (
            TensorSpec(C.TEXT, "STRING", (1,)),
            TensorSpec(C.TOP_K, "INT32", (1,), optional=True),
            TensorSpec(C.CORRECT_SPELLING, "BOOL", (1,), optional=True),
            TensorSpec(C.DETECT_INTENT, "BOOL", (1,), optional=True),
        ),
        (
            TensorSpec(C.CORRECTED, "STRING", (1,)),
            TensorSpec(C.INTENT, "STRING", (1,)),
            TensorSpec(C.INTENT_PROBABILITIES, "FP32", (classes,)),
            *_results(),
        ),
        batching=replace(bar_batching, shed_wait_ms=shed_wait_ms) if shed_wait_ms else bar_batching,
        parameters={
            C.PARAM_SPELL_NUM_BEAMS: str(spell_num_beams),
            C.PARAM_STAGES: C.STAGES_BLS if in_process is None else C.STAGES_INPROCESS,
            **(in_process or {}),
        },
        bls_calls=() if in_process else (C.SPELL_ENTRY, C.INTENT_ENTRY, C.EMBEDDING_ENTRY, C.CATALOG_SEARCH),
        reads_models=tuple((in_process or {}).values()),
    )
    models = {m.name: m for p in (spell, intent, embedding, search) for m in p.models}
    return Pipeline(
        C.SEARCH_BAR,
        "text -> corrected text, intent and catalog results in one call",
        (*models.values(), bar),
        C.SEARCH_BAR,
    )
