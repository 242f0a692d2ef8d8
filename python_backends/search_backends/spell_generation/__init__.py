"""numpy greedy and beam search for BART-style encoder-decoders, token-for-token equal to HF `generate()`."""

from .loop import generate
from .params import GenerationDefaults, GenerationParams

__all__ = ["GenerationDefaults", "GenerationParams", "generate"]
