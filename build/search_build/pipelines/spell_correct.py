"""``spell_correct``: misspelled query -> corrected query (music search), BART encoder-decoder.

    triton-gpu (and any target with ``fuse_text=False``):
    TEXT --spell_tokenize--> input_ids, attention_mask, TAIL (words beyond the model limit)
         --spell_generate (greedy / beam search on the target's engine)--> output_ids
         --spell_detokenize (+ TAIL; the no-damage guard compares with SOURCE unless GUARD is false)--> CORRECTED
    local / triton-cpu (the engine runs inside a Python stub, so the text stages join it: one hop):
    TEXT --spell_generate (tokenize + decode + detokenize with the guard; adapter spell_corrector)--> CORRECTED

Engine per target (measured, benchmarks/bench_spell_correct.py): CTranslate2 inside spell_generate on the CPU
targets; on triton-gpu the loop over ``spell_encoder`` / ``spell_decoder`` (the two exported graphs as TensorRT
plans: encoder + cross-attention K/V, one decoder step with self-attention KV cache) through BLS. Those two
models exist only in ``bls`` mode: no target loads an engine nobody calls.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from search_build.repository.artifacts import PROJECT_ROOT, cached_folder, fingerprint, place
from search_build.repository.spec import (
    Artifact,
    Batching,
    EngineModel,
    Ensemble,
    OptimizationProfile,
    Pipeline,
    PythonModel,
    Step,
    Target,
    TensorSpec,
)
from search_backends.contracts.spell_correct import (
    ATTENTION_MASK,
    CONTROL_DTYPES,
    CONTROL_INPUTS,
    CORRECTED,
    CT2_COMPUTE_TYPE_PARAMETER,
    CT2_DEVICE_PARAMETER,
    CT2_DIR,
    DECODER,
    DECODER_FILE,
    DECODER_INPUT_IDS,
    DECODER_MODEL_PARAMETER,
    DETOKENIZE,
    ENCODER,
    ENCODER_ATTENTION_MASK,
    ENCODER_FILE,
    ENCODER_MODEL_PARAMETER,
    ENGINE_BLS,
    ENGINE_CT2,
    ENGINE_MODE_PARAMETER,
    ENGINE_MODES,
    GENERATE,
    INFLIGHT_MAX_COHORTS_PARAMETER,
    INFLIGHT_MAX_ROWS_PARAMETER,
    INFLIGHT_PARAMETER,
    GUARD_INPUT,
    INPUT_IDS,
    LOGITS,
    MAX_NEW_TOKENS_LIMIT_PARAMETER,
    MAX_NUM_BEAMS_PARAMETER,
    MODEL_DIR,
    MODEL_DIR_PARAMETER,
    OUTPUT_IDS,
    SERVING_FILES,
    SOURCE,
    SPELL_CORRECT,
    TAIL,
    TEXT,
    TOKENIZE,
    GraphNames,
)
from search_backends.graph_engines import GRAPH_FILE, THREADS_PARAMETER

from search_build.pipelines import register
from search_build.pipelines.query_embedding import ENTRY_QUEUE_SIZE

ENSEMBLE = SPELL_CORRECT
DEFAULT_CHECKPOINT = PROJECT_ROOT / "models" / "spell_bart"
CONTROLS = tuple(TensorSpec(name, CONTROL_DTYPES[name], (1,), optional=True) for name in CONTROL_INPUTS)


# Decoder rows the in-flight scheduler holds (live + admitted): the engines' largest batch (profiles below).
INFLIGHT_MAX_ROWS = 256
# Cohorts decoding side by side (search_backends.spell_generation.inflight): measured with bench_spell_correct.py.
INFLIGHT_MAX_COHORTS = 2


def exported_graphs(checkpoint: Path) -> Path:
    """Both ONNX graphs + serving files for ``checkpoint``, exported once and cached by content."""

    def export(dest: Path) -> None:
        from search_build.export.spell_export import export_checkpoint  # torch only when the cache misses

        export_checkpoint(checkpoint, dest)

    return cached_folder(f"spell-onnx-{fingerprint(checkpoint, extra='spell')}", export, DECODER_FILE)


def _serving_dir(checkpoint: Path, with_graphs: bool):
    def build(dest: Path) -> None:
        graphs = exported_graphs(checkpoint)
        dest.mkdir(parents=True, exist_ok=True)
        names = list(SERVING_FILES) + ([ENCODER_FILE, DECODER_FILE] if with_graphs else [])
        for name in names:
            if (graphs / name).exists():
                place(graphs / name, dest / name)

    return build


def _graph(checkpoint: Path, name: str):
    return lambda dest: place(exported_graphs(checkpoint) / name, dest)


def default_engine_mode(target: Target) -> str:
    return ENGINE_BLS if target == "triton-gpu" else ENGINE_CT2


def _ct2_model(checkpoint: Path):
    def build(dest: Path) -> None:
        from search_build.export.spell_ct2 import converted_model  # ctranslate2 only when building

        place(converted_model(checkpoint), dest)

    return build


def _engine_parameters(engine_mode: str, target: Target, precision: str) -> dict[str, str]:
    if engine_mode not in ENGINE_MODES:
        raise ValueError(f"engine_mode must be one of {', '.join(ENGINE_MODES)}, got {engine_mode!r}")
    if engine_mode != ENGINE_CT2:
        # The loop's graphs get the target's precision from the repository writer (engine models). The loop
        # decodes step by step, so requests join it between steps (in-flight batching) instead of waiting for the
        # batch in progress to end.
        return {
            INFLIGHT_PARAMETER: "true",
            INFLIGHT_MAX_ROWS_PARAMETER: str(INFLIGHT_MAX_ROWS),
            INFLIGHT_MAX_COHORTS_PARAMETER: str(INFLIGHT_MAX_COHORTS),
        }
    from search_build.export.spell_ct2 import compute_type

    device = "cuda" if target == "triton-gpu" else "cpu"
    if device == "cpu" and precision == "bf16":
        # CTranslate2 has no bf16 kernels on CPU (its CPU types: int8, int8_float32, float32): the build's bf16
        # is for the encoder engines; decoding stays FP32, token for token equal to HF generate().
        precision = "fp32"
    # One CTranslate2 thread per instance: on the 2-core machine 2 threads ran a batch of 8 at 0.7x the speed of
    # one (and 0.15x under OMP_WAIT_POLICY=PASSIVE); concurrency comes from instances instead.
    return {
        CT2_DEVICE_PARAMETER: device,
        CT2_COMPUTE_TYPE_PARAMETER: compute_type(precision, device),
        THREADS_PARAMETER: "1",
    }


def _generate_batching(engine_mode: str, queue: int) -> Batching:
    if engine_mode == ENGINE_CT2:
        # Two single-threaded CTranslate2 instances: a request arriving while one decodes a batch starts on the
        # other at once, and at concurrency 8 they give 1.3x the throughput of one instance (2-core machine).
        return Batching(max_batch_size=32, max_queue_delay_us=0, instance_count=2, max_queue_size=queue)
    # The loop engines batch in flight (requests join the decoding between steps), so no queue delay and one
    # instance whose scheduler owns the engine: threads = cores.
    return Batching(max_batch_size=32, max_queue_delay_us=0, instance_count=1, max_queue_size=queue)


@register(ENSEMBLE)
def spell_correct_pipeline(
    checkpoint: str | Path | None = None,
    *,
    target: Target = "local",
    precision: str = "fp32",
    engine_mode: str | None = None,
    generate_batching: Batching | None = None,
    bounded_queues: bool = False,
    fuse_text: bool | None = None,
    shed_wait_ms: int = 0,
) -> Pipeline:
    """``shed_wait_ms`` > 0: the fused CTranslate2 stage sheds a request it could not answer within that many ms,
    pricing each by its decoder rows (search_backends.admission); the loop modes bound their work with
    ``inflight_max_rows`` instead."""
    import json

    checkpoint = Path(checkpoint or DEFAULT_CHECKPOINT)
    engine_mode = engine_mode or default_engine_mode(target)
    # The text stages join the decoding stub wherever that stub runs the engine itself: the separate tokenizer
    # and detokenizer stubs cost two Python hops per request (with their copies), which at greedy concurrency 8
    # was 0.54x in-process CTranslate2's throughput on 2 cores.
    fuse = engine_mode != ENGINE_BLS if fuse_text is None else fuse_text
    if fuse and engine_mode == ENGINE_BLS:
        raise ValueError(
            "fuse_text: engine_mode 'bls' decodes through other Triton models; use the three-stage "
            "ensemble (fuse_text=False)"
        )
    if shed_wait_ms and not (fuse and engine_mode == ENGINE_CT2):
        raise ValueError(
            "shed_wait_ms: only the fused ctranslate2 stage sheds load (the loop modes bound their rows with "
            f"{INFLIGHT_MAX_ROWS_PARAMETER}); got engine_mode {engine_mode!r}, fuse_text={fuse}"
        )
    engine_parameters = _engine_parameters(engine_mode, target, precision)
    config = json.loads((checkpoint / "config.json").read_text())
    layers, heads = int(config["decoder_layers"]), int(config["decoder_attention_heads"])
    head_dim, max_pos = int(config["d_model"]) // heads, int(config["max_position_embeddings"])
    ids, mask = TensorSpec(INPUT_IDS, "INT64", (-1,)), TensorSpec(ATTENTION_MASK, "INT64", (-1,))
    output_ids, names = TensorSpec(OUTPUT_IDS, "INT64", (-1,)), GraphNames(layers)
    tail, source = TensorSpec(TAIL, "STRING", (1,)), TensorSpec(SOURCE, "STRING", (1,))
    guard = TensorSpec(GUARD_INPUT, "BOOL", (1,), optional=True)
    kv = (heads, -1, head_dim)
    cross, past, present = (
        tuple(TensorSpec(n, "FP32", kv) for n in group) for group in (names.cross(), names.past(), names.present())
    )
    serving = Artifact(MODEL_DIR, _serving_dir(checkpoint, with_graphs=False))
    # Same overload policy as query_embedding (see there): bounded queues only on request.
    queue = ENTRY_QUEUE_SIZE if bounded_queues else 0
    # No queue delay: a byte tokenizer is cheap per row, so waiting to fill a batch only adds latency; requests
    # queued while an instance is busy still batch (measured with benchmarks/bench_spell_correct.py).
    entry_batching = Batching(max_batch_size=32, max_queue_delay_us=0, instance_count=1, max_queue_size=queue)
    tokenize = PythonModel(
        TOKENIZE,
        "spell_tokenizer",
        (TensorSpec(TEXT, "STRING", (1,)),),
        (ids, mask, tail, source),
        batching=entry_batching,
        artifacts=(serving,),
        parameters={MODEL_DIR_PARAMETER: MODEL_DIR},
    )
    generate_artifacts = [Artifact(MODEL_DIR, _serving_dir(checkpoint, with_graphs=engine_mode != ENGINE_BLS))]
    if engine_mode == ENGINE_CT2:
        generate_artifacts.append(Artifact(f"{MODEL_DIR}/{CT2_DIR}", _ct2_model(checkpoint)))
    generate = PythonModel(
        GENERATE,
        "seq2seq_generate",
        (ids, mask, *CONTROLS),
        (output_ids,),
        batching=generate_batching or _generate_batching(engine_mode, queue),
        parameters={
            MODEL_DIR_PARAMETER: MODEL_DIR,
            ENGINE_MODE_PARAMETER: engine_mode,
            **engine_parameters,
            **(
                {ENCODER_MODEL_PARAMETER: ENCODER, DECODER_MODEL_PARAMETER: DECODER}
                if engine_mode == ENGINE_BLS
                else {}
            ),
            MAX_NUM_BEAMS_PARAMETER: "8",
            MAX_NEW_TOKENS_LIMIT_PARAMETER: str(max_pos - 1),
        },
        artifacts=tuple(generate_artifacts),
        ragged_inputs=True,
        bls_calls=(ENCODER, DECODER) if engine_mode == ENGINE_BLS else (),
    )
    detokenize = PythonModel(
        DETOKENIZE,
        "spell_detokenizer",
        (output_ids, tail, source, guard),
        (TensorSpec(CORRECTED, "STRING", (1,)),),
        batching=Batching(max_batch_size=32, max_queue_size=queue),
        artifacts=(serving,),
        parameters={MODEL_DIR_PARAMETER: MODEL_DIR},
        ragged_inputs=True,
    )
    # Engines take one whole decoding batch per call (from spell_generate), so no dynamic batching.
    engine_batching = Batching(max_batch_size=INFLIGHT_MAX_ROWS, dynamic=False)
    # A direct caller (the bls mode's engines are composing models) gets INVALID_ARGUMENT for ids outside the
    # vocabulary, a mask other than 0/1 or rows longer than the positions, instead of an engine error.
    vocab = int(config["vocab_size"])
    encoder = EngineModel(
        ENCODER,
        Artifact(GRAPH_FILE, _graph(checkpoint, ENCODER_FILE)),
        (ids, mask),
        cross,
        max_sequence_length=max_pos,
        value_ranges={INPUT_IDS: (0, vocab), ATTENTION_MASK: (0, 2)},
        batching=engine_batching,
        ragged=False,
        follows_build_engine=False,
        profiles=(
            OptimizationProfile(
                min={INPUT_IDS: (1, 1), ATTENTION_MASK: (1, 1)},
                opt={INPUT_IDS: (32, 16), ATTENTION_MASK: (32, 16)},
                max={INPUT_IDS: (INFLIGHT_MAX_ROWS, max_pos), ATTENTION_MASK: (INFLIGHT_MAX_ROWS, max_pos)},
            ),
        ),
    )
    decoder = EngineModel(
        DECODER,
        Artifact(GRAPH_FILE, _graph(checkpoint, DECODER_FILE)),
        (
            TensorSpec(DECODER_INPUT_IDS, "INT64", (1,)),
            TensorSpec(ENCODER_ATTENTION_MASK, "INT64", (-1,)),
            *past,
            *cross,
        ),
        (TensorSpec(LOGITS, "FP32", (vocab,)), *present),
        value_ranges={DECODER_INPUT_IDS: (0, vocab)},
        batching=engine_batching,
        ragged=False,
        follows_build_engine=False,
        # The first step feeds an empty cache (past length 0); the graph's positions stop at
        # max_position_embeddings - 1, so the cache never holds more than that (as exported).
        profiles=(
            OptimizationProfile(
                min={
                    DECODER_INPUT_IDS: (1, 1),
                    ENCODER_ATTENTION_MASK: (1, 1),
                    **{t.name: (1, heads, 0, head_dim) for t in past},
                    **{t.name: (1, heads, 1, head_dim) for t in cross},
                },
                opt={
                    DECODER_INPUT_IDS: (32, 1),
                    ENCODER_ATTENTION_MASK: (32, 16),
                    **{t.name: (32, heads, 8, head_dim) for t in past},
                    **{t.name: (32, heads, 16, head_dim) for t in cross},
                },
                max={
                    DECODER_INPUT_IDS: (INFLIGHT_MAX_ROWS, 1),
                    ENCODER_ATTENTION_MASK: (INFLIGHT_MAX_ROWS, max_pos),
                    **{t.name: (INFLIGHT_MAX_ROWS, heads, max_pos - 1, head_dim) for t in past},
                    **{t.name: (INFLIGHT_MAX_ROWS, heads, max_pos, head_dim) for t in cross},
                },
            ),
        ),
    )
    controls = {t.name: t.name for t in CONTROLS}
    text, corrected = TensorSpec(TEXT, "STRING", (1,)), TensorSpec(CORRECTED, "STRING", (1,))
    if fuse:
        fused = replace(
            generate,
            batching=replace(generate.batching, shed_wait_ms=shed_wait_ms),
            adapter="spell_corrector",
            inputs=(text, *CONTROLS, guard),
            outputs=(corrected,),
            ragged_inputs=False,
        )
        ensemble = Ensemble(
            ENSEMBLE,
            (text, *CONTROLS, guard),
            (corrected,),
            (Step(GENERATE, {TEXT: TEXT, **controls, GUARD_INPUT: GUARD_INPUT}, {CORRECTED: CORRECTED}),),
            max_batch_size=32,
        )
        return Pipeline(ENSEMBLE, "misspelled query -> corrected query", (fused, ensemble), ENSEMBLE)
    ensemble = Ensemble(
        ENSEMBLE,
        (text, *CONTROLS, guard),
        (corrected,),
        (
            Step(
                TOKENIZE,
                {TEXT: TEXT},
                {INPUT_IDS: INPUT_IDS, ATTENTION_MASK: ATTENTION_MASK, TAIL: TAIL, SOURCE: SOURCE},
            ),
            Step(
                GENERATE, {INPUT_IDS: INPUT_IDS, ATTENTION_MASK: ATTENTION_MASK, **controls}, {OUTPUT_IDS: OUTPUT_IDS}
            ),
            Step(
                DETOKENIZE,
                {OUTPUT_IDS: OUTPUT_IDS, TAIL: TAIL, SOURCE: SOURCE, GUARD_INPUT: GUARD_INPUT},
                {CORRECTED: CORRECTED},
            ),
        ),
        max_batch_size=32,
    )
    engines = (encoder, decoder) if engine_mode == ENGINE_BLS else ()
    return Pipeline(
        ENSEMBLE, "misspelled query -> corrected query", (tokenize, generate, detokenize, *engines, ensemble), ENSEMBLE
    )
