"""The decoding engine of spell_generate for each engine mode, as one ``decode(ids, mask, params)`` callable.

ctranslate2: CTranslate2's C++ search, with the numpy loop over in-process ONNX Runtime for what it cannot
             match exactly (search_backends.spell_generation.ct2_engine); the CPU default.
inprocess:   the numpy loop over in-process ONNX Runtime sessions.
bls:         the numpy loop over other Triton models (``engines``, given by the adapter): TensorRT on GPU.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .spell_contract import ATTENTION_MASK, CT2_DIR, ENGINE_BLS, ENGINE_CT2, ENGINE_MODES, INPUT_IDS
from .spell_generation import GenerationParams, generate

Decode = Callable[[np.ndarray, np.ndarray, Sequence[GenerationParams]], list]


def loop_over(engines) -> Decode:
    """The numpy loop over an object with ``encode`` and ``decode_step``."""
    return lambda ids, mask, params: generate(engines.encode, engines.decode_step, ids, mask, params)


class SpellDecoder:
    """``decode`` for one engine mode; ``check(params)`` raises ValueError for settings it cannot serve."""

    def __init__(self, mode: str, model_dir: str | Path, *, threads: int = 0, engines=None,
                 compute_type: str = "default", device: str = "cpu"):
        if mode not in ENGINE_MODES:
            raise ValueError(f"engine_mode must be one of {', '.join(ENGINE_MODES)}, got {mode!r}")
        model_dir = Path(model_dir)
        self.mode, self.ct2 = mode, None
        if mode == ENGINE_BLS:
            if engines is None:
                raise ValueError("engine_mode 'bls' needs the adapter's BLS engines")
            self.decode = loop_over(engines)
            return
        from .spell_corrector import OnnxSpellModel

        self.decode = loop_over(OnnxSpellModel(model_dir, intra_op_threads=threads))
        if mode == ENGINE_CT2:
            from .spell_generation.ct2_engine import CTranslate2Generation

            self.ct2 = CTranslate2Generation(model_dir / CT2_DIR, device=device, compute_type=compute_type,
                                             intra_threads=threads, exact=self.decode)
            self.decode = self.ct2.generate

    def check(self, params: GenerationParams) -> None:
        if self.ct2 is not None:
            self.ct2.check(params)


def pad_rows(rows: Sequence[Sequence[int]], pad_id: int) -> np.ndarray:
    """Rows of different lengths right-padded with ``pad_id`` into one int64 [N, longest] array."""
    out = np.full((len(rows), max((len(r) for r in rows), default=0)), pad_id, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, :len(row)] = row
    return out


def request_rows_error(input_ids: np.ndarray, attention_mask: np.ndarray) -> str | None:
    """Why a request's token rows cannot be decoded, or None."""
    if input_ids.shape != attention_mask.shape or input_ids.ndim != 2 or (attention_mask.sum(axis=1) == 0).any():
        return (f"{INPUT_IDS}/{ATTENTION_MASK}: need equal [N, L] shapes and at least one attended token per row, "
                f"got {list(input_ids.shape)} and {list(attention_mask.shape)}")
    return None
