"""The spell checkpoint converted for CTranslate2 (the CPU decoding engine of spell_generate), cached by content.

Converted once in float32; the serving precision is CTranslate2's ``compute_type`` at load time
(weights are quantized then), so one conversion serves every precision.

``ctranslate2``'s BART loader reads ``config.normalize_before``, which transformers 5's BartConfig no longer
defines. BART is post-LayerNorm, so the converter is given a config copy that says ``normalize_before=false``;
the weights are untouched (parity with HF generate() is tested on the converted model).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from search_backends.contracts.spell_correct import CT2_DONE_FILE

from search_build.repository.artifacts import cached_folder, fingerprint

# --precision -> CTranslate2 compute_type, per device
COMPUTE_TYPES = {
    "cpu": {"fp32": "float32", "int8": "int8"},
    "cuda": {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "int8": "int8_float16"},
}


def compute_type(precision: str, device: str = "cpu") -> str:
    try:
        return COMPUTE_TYPES[device][precision]
    except KeyError:
        raise ValueError(
            f"CTranslate2 on {device} takes precision {', '.join(COMPUTE_TYPES.get(device, {}))}; got {precision!r}"
        ) from None


def convert(checkpoint: Path, dest: Path) -> dict:
    """Convert ``checkpoint`` into ``dest``; returns notes on what the conversion needed."""
    import ctranslate2

    notes = {"ctranslate2": ctranslate2.__version__, "workarounds": []}
    config = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory() as scratch:
        source = checkpoint
        if config.get("model_type") == "bart" and "normalize_before" not in config:
            source = Path(scratch) / "checkpoint"
            shutil.copytree(checkpoint, source)
            (source / "config.json").write_text(
                json.dumps({**config, "normalize_before": False}, indent=2), encoding="utf-8"
            )
            notes["workarounds"].append("config.json copy with normalize_before=false (BART is post-LayerNorm)")
        ctranslate2.converters.TransformersConverter(str(source)).convert(str(dest), force=True)
    (dest / "conversion_notes.json").write_text(json.dumps(notes, indent=2) + "\n", encoding="utf-8")
    return notes


def converted_model(checkpoint: str | Path) -> Path:
    """The cached CTranslate2 folder of ``checkpoint`` (converted on first use)."""
    import ctranslate2

    checkpoint = Path(checkpoint)
    key = fingerprint(checkpoint, extra=f"ct2-{ctranslate2.__version__}")
    return cached_folder(f"spell-ct2-{key}", lambda dest: convert(checkpoint, dest), CT2_DONE_FILE)
