"""Declarative description of a serving pipeline: its models, their tensors, batching and wiring.

One spec per pipeline (``search_build.pipelines``) is the single source of every
``config.pbtxt`` for every build target; :mod:`search_build.repository.configs` renders it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

DType = Literal["STRING", "BOOL", "INT32", "INT64", "FP16", "FP32", "BF16"]
Target = Literal["local", "triton-cpu", "triton-gpu"]
TARGETS: tuple[Target, ...] = ("local", "triton-cpu", "triton-gpu")


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: DType
    dims: tuple[int, ...]  # without the batch dimension; -1 = variable
    optional: bool = False


@dataclass(frozen=True)
class Batching:
    """Dynamic batching and instance settings of one model (the knobs the sweeps tune)."""

    max_batch_size: int = 64
    max_queue_delay_us: int = 0
    preferred_batch_sizes: tuple[int, ...] = ()
    instance_count: int = 1
    # Bounded queue: beyond this many queued requests new ones are rejected at once (0 = unbounded).
    max_queue_size: int = 0
    # Requests waiting longer than this in the queue are rejected rather than served late (0 = never).
    queue_timeout_us: int = 0
    dynamic: bool = True
    # Load shedding in the stage itself (search_backends.admission; Triton's queue policies stall in 2.51): a
    # request whose queue wait would exceed this many ms is answered UNAVAILABLE at once (0 = never). Only the
    # local target's fused text stages (text_encoder) take it.
    shed_wait_ms: int = 0

    def __post_init__(self) -> None:
        """Values come from JSON overrides and sweep files too: refuse nonsense with a message naming the field."""
        for name, minimum in (
            ("max_batch_size", 0),
            ("max_queue_delay_us", 0),
            ("instance_count", 1),
            ("max_queue_size", 0),
            ("queue_timeout_us", 0),
            ("shed_wait_ms", 0),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"Batching.{name} must be an integer >= {minimum}, got {value!r}")
        sizes = self.preferred_batch_sizes
        if not isinstance(sizes, (tuple, list)) or any(
            isinstance(n, bool) or not isinstance(n, int) or n < 1 or (self.max_batch_size and n > self.max_batch_size)
            for n in sizes
        ):
            raise ValueError(
                f"Batching.preferred_batch_sizes must be integers in 1..max_batch_size "
                f"({self.max_batch_size}), got {sizes!r}"
            )
        if not isinstance(self.dynamic, bool):
            raise ValueError(f"Batching.dynamic must be true or false, got {self.dynamic!r}")


@dataclass(frozen=True)
class Artifact:
    """A file or folder a model needs next to its config, produced on demand.

    ``build(dest)`` writes it; ``cache_key`` (e.g. checkpoint hash + exporter version) lets the
    repository writer reuse an earlier result instead of exporting again.
    """

    dest: str  # relative to the model's version folder
    build: Callable[[Path], object]
    cache_key: str | None = None


@dataclass(frozen=True)
class PythonModel:
    """A Python-backend model: ``adapter`` names a folder of python_backends/triton_models."""

    name: str
    adapter: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    batching: Batching = Batching()
    parameters: dict[str, str] = field(default_factory=dict)
    artifacts: tuple[Artifact, ...] = ()
    ragged_inputs: bool = False  # requests of different lengths may share a batch
    # Models this one calls through BLS: they must be loaded too (SageMaker --load-model list).
    bls_calls: tuple[str, ...] = ()
    # Models whose files this one runs in its own process (search_bar with in-process stages): they must be in the
    # same repository (packaged with it), but need not be loaded.
    reads_models: tuple[str, ...] = ()


@dataclass(frozen=True)
class FusedTokenizer:
    """Tokenization inside an engine model's own stub (local target): one Python hop per request instead of two.

    On the local target the engine runs in a Python stub anyway; crossing into a second stub for tokenization
    and back through the ensemble cost ~1.8 ms of a 4 ms request at concurrency 1 (``searchbar hops``), more
    than the bf16 encoder itself. The engine model then takes ``text_input`` instead of token ids.
    """

    text_input: "TensorSpec"
    artifact: Artifact  # the tokenizer folder, placed at artifact.dest in the version folder
    parameters: dict[str, str] = field(default_factory=dict)  # max_length, pad_to_multiple_of


@dataclass(frozen=True)
class FusedHead:
    """The intent head run on a fused engine's pooled output in the same stub (local target, with a FusedTokenizer):
    text in, the head's answers out, one Python hop instead of three. ``inputs`` are the head's optional request
    inputs (TOP_K), ``outputs`` replace the engine's in the served config."""

    inputs: tuple["TensorSpec", ...]
    outputs: tuple["TensorSpec", ...]
    artifacts: tuple[Artifact, ...]  # the head graph and its labels, placed in the version folder
    parameters: dict[str, str] = field(default_factory=dict)  # head_file, labels_file, top_k


@dataclass(frozen=True)
class OptimizationProfile:
    """TensorRT shape range per input (including the batch dimension)."""

    min: dict[str, tuple[int, ...]]
    opt: dict[str, tuple[int, ...]]
    max: dict[str, tuple[int, ...]]


@dataclass(frozen=True)
class EngineModel:
    """An exported graph: ONNX Runtime (local Python runner or Triton's onnxruntime backend) or TensorRT."""

    name: str
    onnx: Artifact  # dest must be "model.onnx"
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    batching: Batching = Batching()
    profiles: tuple[OptimizationProfile, ...] = ()
    intra_op_threads: int = 0
    # Requests of different lengths may share a batch on the local runner (padded there). Off for
    # graphs whose variable axes are not a trailing padded sequence (e.g. KV caches).
    ragged: bool = True
    # What a direct request may send (search_backends.engine_inputs): the longest sequence and each input's
    # value range. Enforced by the local runner; empty = unchecked.
    max_sequence_length: int = 0
    value_ranges: dict[str, tuple[int, int]] = field(default_factory=dict)
    # CPU targets' engine and precision (search_build.repository.engine_choice sets them for the whole build; the
    # triton-gpu target compiles TensorRT plans at the build's precision instead).
    engine: str = "onnxruntime"
    precision: str = "fp32"
    # False for graphs whose consumers need FP32 bit-for-bit behaviour (the spell loop's KV-cache graphs must
    # match HF generate token for token): they stay on ONNX Runtime FP32 on CPU targets whatever the build says.
    follows_build_engine: bool = True
    # With "auto" precision: what to build instead when the chosen precision fails the parity gate.
    fallback_precision: str | None = None
    # The build-time parity gate's inputs (search_build.export.engine_parity): named batches of real inputs (None:
    # synthetic ids), and a probe turning one batch's outputs into what clients see (e.g. head probabilities).
    parity_feeds: Callable[[], dict] | None = field(default=None, compare=False)
    parity_probe: Callable[[str, dict], dict] | None = field(default=None, compare=False)
    # Which pipelines' outputs the gate judges (rendered on the local target, so that two pipelines sharing the model
    # with different gates are refused instead of one gate silently deciding for both). Empty: the graph's own.
    parity_scope: tuple[str, ...] = ()
    # Set by factories for the local target only (see FusedTokenizer); the graph itself still takes ids.
    tokenizer: FusedTokenizer | None = None
    head: FusedHead | None = None  # only with ``tokenizer``: what the fused stub answers instead of the graph's outputs


@dataclass(frozen=True)
class Step:
    model: str
    input_map: dict[str, str]  # model input -> ensemble tensor
    output_map: dict[str, str]  # model output -> ensemble tensor


@dataclass(frozen=True)
class Ensemble:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    steps: tuple[Step, ...]
    max_batch_size: int = 64


Model = PythonModel | EngineModel | Ensemble


@dataclass(frozen=True)
class Pipeline:
    name: str
    description: str
    models: tuple[Model, ...]
    entry: str  # the model clients call (ensemble or BLS model)

    def model(self, name: str) -> Model:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(f"{self.name}: no model {name!r}")

    def with_batching(self, model_name: str, batching: Batching) -> "Pipeline":
        """A copy with one model's batching replaced (used by the configuration sweeps)."""
        from dataclasses import replace

        return replace(
            self, models=tuple(replace(m, batching=batching) if m.name == model_name else m for m in self.models)
        )
