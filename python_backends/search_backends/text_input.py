"""Validation of raw text arriving as Triton BYTES tensors."""

from __future__ import annotations

from .contracts.query_embedding import TEXT

# Longer inputs are rejected before tokenization: tokenizing megabytes only to truncate them
# to a few hundred tokens would stall every other request in the dynamic batch.
MAX_TEXT_BYTES = 64 * 1024


class InputError(ValueError):
    """A problem with one request's input; reported to that request only."""


def decode_text(value: object, *, field: str = TEXT, allow_empty: bool = False, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """Turn one BYTES element into a clean ``str`` or raise :class:`InputError`."""
    if isinstance(value, str):
        raw = value.encode("utf-8", "surrogatepass")
    elif isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
    else:
        raise InputError(f"{field}: expected UTF-8 bytes, got {type(value).__name__}")
    if len(raw) > max_bytes:
        raise InputError(f"{field}: text is {len(raw)} bytes; the limit is {max_bytes} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{field}: invalid UTF-8 at byte {exc.start}") from None
    if "\x00" in text:
        raise InputError(f"{field}: text contains a NUL character")
    if not allow_empty and not text.strip():
        raise InputError(f"{field}: text is empty")
    return text
