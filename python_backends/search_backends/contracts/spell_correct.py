"""Every name of the spell_correct pipeline: models, files of a serving folder, tensors, controls, parameters.

Imported by the build (export, pipeline spec), the serving logic, the adapters and the tools, so a name is
written once. No heavy imports here.
"""

from __future__ import annotations

from dataclasses import dataclass

from .query_embedding import ATTENTION_MASK, INPUT_IDS, TEXT  # noqa: F401 - shared names, re-exported

# Models.
SPELL_CORRECT = "spell_correct"  # the ensemble clients call
TOKENIZE, GENERATE, DETOKENIZE = "spell_tokenize", "spell_generate", "spell_detokenize"
ENCODER, DECODER = "spell_encoder", "spell_decoder"  # the two graphs as engine models (engine mode bls only)

MODEL_DIR = "spell_model"  # the serving folder inside each stage's version folder
ENCODER_FILE = "spell_encoder.onnx"
DECODER_FILE = "spell_decoder.onnx"
LEXICON_FILE = "lexicon.tsv"  # the no-damage guard's word frequencies (search_backends.spell_guard)
BIGRAMS_FILE = "bigrams.tsv"  # two-word phrases the lexicon repair uses as context
RERANKER_FILE = "word_reranker.json"  # the repair's learnt candidate score (search_backends.spell_rerank)
# Files of a checkpoint that serving needs besides the graphs (absent ones are skipped).
SERVING_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    LEXICON_FILE,
    BIGRAMS_FILE,
    RERANKER_FILE,
)

CORRECTED = "CORRECTED"  # the ensemble's text out (TEXT in)
SOURCE = "SOURCE"  # the normalised text the model saw, for the guard
TAIL = "TAIL"  # words beyond the model's input limit, appended unchanged
GUARD_INPUT, GUARD_PARAMETER = "GUARD", "guard"  # switch the guard off per request (BOOL input or parameter)
CT2_DIR = "ctranslate2"  # the CTranslate2 conversion of the checkpoint, inside a serving folder
CT2_DONE_FILE = "model.bin"  # written last by the converter: a folder without it is incomplete
# spell_generate's decoding engines, and the model parameters that pick them
ENGINE_CT2, ENGINE_INPROCESS, ENGINE_BLS = "ctranslate2", "inprocess", "bls"
ENGINE_MODES = (ENGINE_CT2, ENGINE_INPROCESS, ENGINE_BLS)
ENGINE_MODE_PARAMETER, CT2_COMPUTE_TYPE_PARAMETER, CT2_DEVICE_PARAMETER = (
    "engine_mode",
    "ct2_compute_type",
    "ct2_device",
)
MODEL_DIR_PARAMETER = "model_dir"
# Loop engines (inprocess, bls): in-flight batching on/off, the decoder rows it may hold (live + waiting), and how
# many cohorts (groups of requests that started together) may decode side by side
INFLIGHT_PARAMETER, INFLIGHT_MAX_ROWS_PARAMETER = "inflight_batching", "inflight_max_rows"
INFLIGHT_MAX_COHORTS_PARAMETER = "inflight_max_cohorts"
# bls mode: the Triton models spell_generate calls for the encoder and one decoder step
ENCODER_MODEL_PARAMETER, DECODER_MODEL_PARAMETER = "encoder_model", "decoder_model"
# Bounds on what a request's controls may ask (search_backends.generation_controls.ControlLimits)
MAX_NUM_BEAMS_PARAMETER, MAX_NEW_TOKENS_LIMIT_PARAMETER = "max_num_beams", "max_new_tokens_limit"

# Decoding controls: optional Triton input (shape [1]) -> generate() option; request parameters use the option
# names. CONTROL_DTYPES: each input's Triton data type (the spec declares them from here).
NUM_BEAMS, MAX_NEW_TOKENS, MIN_LENGTH = "NUM_BEAMS", "MAX_NEW_TOKENS", "MIN_LENGTH"
LENGTH_PENALTY, NO_REPEAT_NGRAM_SIZE, EARLY_STOPPING = "LENGTH_PENALTY", "NO_REPEAT_NGRAM_SIZE", "EARLY_STOPPING"
CONTROL_INPUTS = {
    NUM_BEAMS: "num_beams",
    MAX_NEW_TOKENS: "max_new_tokens",
    MIN_LENGTH: "min_length",
    LENGTH_PENALTY: "length_penalty",
    NO_REPEAT_NGRAM_SIZE: "no_repeat_ngram_size",
    EARLY_STOPPING: "early_stopping",
}
CONTROL_DTYPES = {
    NUM_BEAMS: "INT32",
    MAX_NEW_TOKENS: "INT32",
    MIN_LENGTH: "INT32",
    LENGTH_PENALTY: "FP32",
    NO_REPEAT_NGRAM_SIZE: "INT32",
    EARLY_STOPPING: "STRING",
}

# Tensors between the ensemble's steps and of the two exported graphs (besides INPUT_IDS, ATTENTION_MASK)
OUTPUT_IDS = "output_ids"
DECODER_INPUT_IDS, ENCODER_ATTENTION_MASK, LOGITS = "decoder_input_ids", "encoder_attention_mask", "logits"
ENCODER_HIDDEN_STATES = "encoder_hidden_states"
# Per decoder layer i: cross-attention K/V (encoder outputs), the self-attention cache in and out of a step.
CROSS, PAST, PRESENT = "cross", "past", "present"
KEY, VALUE = "key", "value"


def kv_name(kind: str, kv: str, layer: int) -> str:
    """``cross_key_0``, ``past_value_3``, ...: one K/V tensor of one decoder layer."""
    return f"{kind}_{kv}_{layer}"


@dataclass(frozen=True)
class GraphNames:
    """Input/output names of spell_encoder.onnx and spell_decoder.onnx for a decoder of ``layers`` layers."""

    layers: int

    def _per_layer(self, kind: str) -> list[str]:
        return [kv_name(kind, kv, i) for i in range(self.layers) for kv in (KEY, VALUE)]

    def cross(self) -> list[str]:
        return self._per_layer(CROSS)

    def past(self) -> list[str]:
        return self._per_layer(PAST)

    def present(self) -> list[str]:
        return self._per_layer(PRESENT)

    def encoder_inputs(self) -> list[str]:
        return [INPUT_IDS, ATTENTION_MASK]

    def encoder_outputs(self) -> list[str]:
        return [ENCODER_HIDDEN_STATES, *self.cross()]

    def decoder_inputs(self) -> list[str]:
        return [DECODER_INPUT_IDS, ENCODER_ATTENTION_MASK, *self.past(), *self.cross()]

    def decoder_outputs(self) -> list[str]:
        return [LOGITS, *self.present()]
