"""The decoding engine of spell_generate for each engine mode, as one ``decode(ids, mask, params)`` callable.

ctranslate2: CTranslate2's C++ search, with the numpy loop over in-process ONNX Runtime for what it cannot
             match exactly (search_backends.spell_generation.ct2_engine); the CPU default.
inprocess:   the numpy loop over in-process ONNX Runtime sessions.
bls:         the numpy loop over other Triton models (``engines``, given by the adapter): TensorRT on GPU.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .contracts.spell_correct import (
    ATTENTION_MASK,
    CT2_COMPUTE_TYPE_PARAMETER,
    CT2_DEVICE_PARAMETER,
    CT2_DIR,
    DECODER_MODEL_PARAMETER,
    ENCODER_MODEL_PARAMETER,
    ENGINE_BLS,
    ENGINE_CT2,
    ENGINE_INPROCESS,
    ENGINE_MODE_PARAMETER,
    ENGINE_MODES,
    INFLIGHT_MAX_COHORTS_PARAMETER,
    INFLIGHT_MAX_ROWS_PARAMETER,
    INFLIGHT_PARAMETER,
    INPUT_IDS,
    MAX_NEW_TOKENS_LIMIT_PARAMETER,
    MAX_NUM_BEAMS_PARAMETER,
)
from .engine_inputs import EngineInputRules
from .generation_controls import ControlLimits, parse_controls
from .model_parameters import int_parameter
from .spell_generation import GenerationDefaults, GenerationParams, generate
from .spell_generation.inflight import InflightDecoder
from .text_input import InputError

Decode = Callable[[np.ndarray, np.ndarray, Sequence[GenerationParams]], list]


def loop_over(engines) -> Decode:
    """The numpy loop over an object with ``encode`` and ``decode_step``."""
    return lambda ids, mask, params: generate(engines.encode, engines.decode_step, ids, mask, params)


class SpellDecoder:
    """``decode`` for one engine mode; ``check(params)`` raises ValueError for settings it cannot serve."""

    def __init__(
        self,
        mode: str,
        model_dir: str | Path,
        *,
        threads: int = 0,
        engines=None,
        compute_type: str = "default",
        device: str = "cpu",
    ):
        if mode not in ENGINE_MODES:
            raise ValueError(f"engine_mode must be one of {', '.join(ENGINE_MODES)}, got {mode!r}")
        model_dir = Path(model_dir)
        self.mode, self.ct2 = mode, None
        if mode == ENGINE_BLS:
            if engines is None:
                raise ValueError("engine_mode 'bls' needs the adapter's BLS engines")
            self.engines = engines
            self.decode = loop_over(engines)
            return
        from .spell_corrector import OnnxSpellModel

        # encode / decode_step for the loop (in ctranslate2 mode, for what CTranslate2 cannot match exactly)
        self.engines = OnnxSpellModel(model_dir, intra_op_threads=threads)
        self.decode = loop_over(self.engines)
        if mode == ENGINE_CT2:
            from .spell_generation.ct2_engine import CTranslate2Generation

            self.ct2 = CTranslate2Generation(
                model_dir / CT2_DIR, device=device, compute_type=compute_type, intra_threads=threads, exact=self.decode
            )
            self.decode = self.ct2.generate

    def check(self, params: GenerationParams) -> None:
        if self.ct2 is not None:
            self.ct2.check(params)

    def inflight(self, pad_id: int, max_rows: int, max_cohorts: int) -> InflightDecoder:
        """The iteration-level scheduler over this mode's loop (CTranslate2 cannot add rows to a running search)."""
        if self.ct2 is not None:
            raise ValueError(
                f"{INFLIGHT_PARAMETER}: engine_mode {ENGINE_CT2!r} decodes each batch to the end; in-flight batching "
                f"needs a loop engine ({ENGINE_INPROCESS!r} or {ENGINE_BLS!r})"
            )
        return InflightDecoder(
            self.engines.encode, self.engines.decode_step, pad_id=pad_id, max_rows=max_rows, max_cohorts=max_cohorts
        )


@dataclass
class ServedDecoding:
    """What a spell stub that decodes needs, from its model folder and config parameters: the engine, the
    checkpoint's generation defaults, the per-request control limits and the rules for direct token input."""

    decoder: SpellDecoder
    defaults: GenerationDefaults
    limits: ControlLimits
    rules: EngineInputRules
    pad_id: int
    # Set when the model config turns in-flight batching on (loop engines): decode with submit(), not decode().
    inflight: InflightDecoder | None = None

    @classmethod
    def from_parameters(
        cls,
        model_dir: str | Path,
        params: Mapping[str, str],
        *,
        threads: int = 0,
        bls_engines: Callable[[str, str, int], object] | None = None,
    ) -> "ServedDecoding":
        model_dir = Path(model_dir)
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        mode = params[ENGINE_MODE_PARAMETER]
        engines = None
        if mode == ENGINE_BLS:
            if bls_engines is None:
                raise ValueError("engine_mode 'bls' needs the adapter's BLS engines")
            engines = bls_engines(
                params[ENCODER_MODEL_PARAMETER], params[DECODER_MODEL_PARAMETER], int(config["decoder_layers"])
            )
        decoder = SpellDecoder(
            mode,
            model_dir,
            threads=threads,
            engines=engines,
            compute_type=params.get(CT2_COMPUTE_TYPE_PARAMETER, "default"),
            device=params.get(CT2_DEVICE_PARAMETER, "cpu"),
        )
        defaults = ControlLimits()
        limits = ControlLimits(
            max_num_beams=int_parameter(params, MAX_NUM_BEAMS_PARAMETER, defaults.max_num_beams, minimum=1),
            max_new_tokens=int_parameter(params, MAX_NEW_TOKENS_LIMIT_PARAMETER, defaults.max_new_tokens, minimum=1),
        )
        # A direct caller's ids must fit the vocabulary and the model's positions (the codec's never exceed them).
        rules = EngineInputRules(
            int(config["max_position_embeddings"]), {INPUT_IDS: (0, int(config["vocab_size"])), ATTENTION_MASK: (0, 2)}
        )
        pad_id = int(config.get("pad_token_id") or 0)
        inflight = None
        if params.get(INFLIGHT_PARAMETER, "false").strip().lower() in ("true", "1", "yes"):
            inflight = decoder.inflight(
                pad_id,
                int_parameter(params, INFLIGHT_MAX_ROWS_PARAMETER, 256, minimum=1),
                int_parameter(params, INFLIGHT_MAX_COHORTS_PARAMETER, 2, minimum=1),
            )
        return cls(decoder, GenerationDefaults.from_model_dir(model_dir), limits, rules, pad_id, inflight)

    def request_params(self, inputs: Mapping[str, Any], parameters: Mapping[str, Any]) -> GenerationParams:
        """One request's decoding settings from its optional control inputs and request parameters (inputs
        win), within the limits and what the engine can serve; anything else raises InputError naming it."""
        overrides = parse_controls(inputs, parameters, self.limits)
        try:
            resolved = self.defaults.resolve(**overrides)
            self.decoder.check(resolved)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        return resolved

    def token_rows(
        self, input_ids: np.ndarray | None, attention_mask: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """A request's token input (direct callers send it too) as int64 rows, or InputError saying what is wrong."""
        if input_ids is None or attention_mask is None:
            raise InputError(f"{INPUT_IDS}/{ATTENTION_MASK}: missing input")
        ids, mask = np.asarray(input_ids).astype(np.int64), np.asarray(attention_mask).astype(np.int64)
        problem = request_rows_error(ids, mask)
        if problem:
            raise InputError(problem)
        self.rules.check({INPUT_IDS: ids, ATTENTION_MASK: mask})
        return ids, mask

    def decode_requests(self, requests: Sequence[tuple[np.ndarray, np.ndarray, GenerationParams]]) -> list[np.ndarray]:
        """Every request's rows (``(ids, mask, params)`` from :meth:`token_rows` / :meth:`request_params`) in one
        decoding call, padded together; each request's output ids back, right-padded to its own longest row."""
        ids_rows = [row for ids, _, _ in requests for row in ids]
        mask_rows = [row for _, mask, _ in requests for row in mask]
        row_params = [params for ids, _, params in requests for _ in range(len(ids))]
        outputs = (
            self.decoder.decode(pad_rows(ids_rows, self.pad_id), pad_rows(mask_rows, 0), row_params) if ids_rows else []
        )
        results, start = [], 0
        for ids, _, _ in requests:
            results.append(pad_rows(outputs[start : start + len(ids)], self.pad_id))
            start += len(ids)
        return results

    def submit_requests(self, requests: Sequence[tuple[np.ndarray, np.ndarray, GenerationParams]], answers) -> None:
        """In-flight form of :meth:`decode_requests`: the requests join the live decoding at its next step, and
        ``answers[i](output_ids, error)`` is called (on the scheduler's thread) as soon as request i is final."""
        assert self.inflight is not None, "in-flight batching is off for this model"
        jobs = []
        for (ids, mask, params), answer in zip(requests, answers):
            jobs.append((ids, mask, [params] * len(ids), _padded_answer(answer, self.pad_id)))
        self.inflight.submit_all(jobs)

    def close(self) -> None:
        if self.inflight is not None:
            self.inflight.close()


def _padded_answer(answer, pad_id: int):
    return lambda rows, error: answer(None if error else pad_rows(rows, pad_id), error)


def pad_rows(rows: Sequence[Sequence[int]], pad_id: int) -> np.ndarray:
    """Rows of different lengths right-padded with ``pad_id`` into one int64 [N, longest] array."""
    out = np.full((len(rows), max((len(r) for r in rows), default=0)), pad_id, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def request_rows_error(input_ids: np.ndarray, attention_mask: np.ndarray) -> str | None:
    """Why a request's token rows cannot be decoded, or None."""
    if input_ids.shape != attention_mask.shape or input_ids.ndim != 2 or (attention_mask.sum(axis=1) == 0).any():
        return (
            f"{INPUT_IDS}/{ATTENTION_MASK}: need equal [N, L] shapes and at least one attended token per row, "
            f"got {list(input_ids.shape)} and {list(attention_mask.shape)}"
        )
    return None
