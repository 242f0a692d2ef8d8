"""Character-level BART tokenizer built with the `tokenizers` library (no hub download).

It is a byte-level BPE with the 256-symbol byte alphabet and no merges, i.e. one token per byte, wrapped in
BART's conventions: <s>=0, <pad>=1, </s>=2, <unk>=3, byte b is token b+4, <mask>=260 last; encodings are "<s> ... </s>".
Because that is exactly the structure of BART's own tokenizer, `AutoTokenizer.from_pretrained(dir)` loads it
as a `BartTokenizer`, and serving can load the same `tokenizer.json` with plain `tokenizers`.
Characters, not subwords, because a typo changes a word's subword split, and the model has to see letters.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
from tokenizers.models import BPE

SPECIAL_TOKENS = {"bos": "<s>", "pad": "<pad>", "eos": "</s>", "unk": "<unk>", "mask": "<mask>"}


def byte_symbols() -> list[str]:
    """GPT-2's printable stand-in for each byte value 0..255 (the alphabet ByteLevel pre-tokenization emits)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    symbols, extra = {}, 0
    for b in range(256):
        if b in printable:
            symbols[b] = chr(b)
        else:
            symbols[b] = chr(256 + extra)
            extra += 1
    return [symbols[b] for b in range(256)]


def char_vocabulary() -> dict[str, int]:
    """Token id = byte value + 4, so ids are stable and readable (ASCII "a" is 97 + 4)."""
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for symbol in byte_symbols():
        vocab[symbol] = len(vocab)
    vocab["<mask>"] = len(vocab)
    return vocab


def build_char_tokenizer() -> Tokenizer:
    vocab = char_vocabulary()
    tok = Tokenizer(BPE(vocab=vocab, merges=[], unk_token="<unk>", fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", vocab["</s>"]), ("<s>", vocab["<s>"]), add_prefix_space=False
    )
    tok.add_special_tokens(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    return tok


def save_bart_tokenizer(out_dir: str | Path, model_max_length: int) -> Tokenizer:
    """Write tokenizer.json + vocab.json/merges.txt + tokenizer_config.json + special_tokens_map.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = build_char_tokenizer()
    tok.save(str(out / "tokenizer.json"))
    (out / "vocab.json").write_text(json.dumps(char_vocabulary(), ensure_ascii=False))
    (out / "merges.txt").write_text("#version: 0.2\n")
    special = {
        "bos_token": "<s>",
        "eos_token": "</s>",
        "sep_token": "</s>",
        "cls_token": "<s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "mask_token": "<mask>",
    }
    config = {
        "tokenizer_class": "BartTokenizer",
        "model_max_length": model_max_length,
        "add_prefix_space": False,
        "errors": "replace",
        "trim_offsets": True,
        **special,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    return tok
