"""Every name of the spell_correct pipeline that two modules share: files of a serving folder, tensors, controls.

Imported by the build (export, pipeline spec), the serving logic, the adapters and the tools, so a name is
written once. No heavy imports here.
"""
from __future__ import annotations

from dataclasses import dataclass

ENCODER_FILE = "spell_encoder.onnx"
DECODER_FILE = "spell_decoder.onnx"
LEXICON_FILE = "lexicon.tsv"  # the no-damage guard's word frequencies (search_backends.spell_guard)
BIGRAMS_FILE = "bigrams.tsv"  # two-word phrases the lexicon repair uses as context
RERANKER_FILE = "word_reranker.json"  # the repair's learnt candidate score (search_backends.spell_rerank)
# Files of a checkpoint that serving needs besides the graphs (absent ones are skipped).
SERVING_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json", "vocab.json", "merges.txt", LEXICON_FILE, BIGRAMS_FILE, RERANKER_FILE)

TEXT, CORRECTED = "TEXT", "CORRECTED"  # the ensemble's text in and out
SOURCE = "SOURCE"  # the normalised text the model saw, for the guard
TAIL = "TAIL"  # words beyond the model's input limit, appended unchanged
GUARD_INPUT, GUARD_PARAMETER = "GUARD", "guard"  # switch the guard off per request (BOOL input or parameter)
CT2_DIR = "ctranslate2"  # the CTranslate2 conversion of the checkpoint, inside a serving folder
CT2_DONE_FILE = "model.bin"  # written last by the converter: a folder without it is incomplete
# spell_generate's decoding engines, and the model parameters that pick them
ENGINE_CT2, ENGINE_INPROCESS, ENGINE_BLS = "ctranslate2", "inprocess", "bls"
ENGINE_MODES = (ENGINE_CT2, ENGINE_INPROCESS, ENGINE_BLS)
ENGINE_MODE_PARAMETER, CT2_COMPUTE_TYPE_PARAMETER, CT2_DEVICE_PARAMETER = "engine_mode", "ct2_compute_type", "ct2_device"

# Tensors between the ensemble's steps and of the two exported graphs
INPUT_IDS, ATTENTION_MASK, OUTPUT_IDS = "input_ids", "attention_mask", "output_ids"
DECODER_INPUT_IDS, ENCODER_ATTENTION_MASK, LOGITS = "decoder_input_ids", "encoder_attention_mask", "logits"
ENCODER_HIDDEN_STATES = "encoder_hidden_states"


@dataclass(frozen=True)
class GraphNames:
    """Input/output names of spell_encoder.onnx and spell_decoder.onnx for a decoder of ``layers`` layers."""

    layers: int

    def _per_layer(self, kind: str) -> list[str]:
        return [f"{kind}_{kv}_{i}" for i in range(self.layers) for kv in ("key", "value")]

    def cross(self) -> list[str]:
        return self._per_layer("cross")

    def past(self) -> list[str]:
        return self._per_layer("past")

    def present(self) -> list[str]:
        return self._per_layer("present")

    def encoder_inputs(self) -> list[str]:
        return [INPUT_IDS, ATTENTION_MASK]

    def encoder_outputs(self) -> list[str]:
        return [ENCODER_HIDDEN_STATES, *self.cross()]

    def decoder_inputs(self) -> list[str]:
        return [DECODER_INPUT_IDS, ENCODER_ATTENTION_MASK, *self.past(), *self.cross()]

    def decoder_outputs(self) -> list[str]:
        return [LOGITS, *self.present()]
