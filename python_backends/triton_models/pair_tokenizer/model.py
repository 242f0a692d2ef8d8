"""Triton adapter: product pair fields -> one cross-encoder sequence (search_backends.pair_encoding)."""
from __future__ import annotations

from search_backends.model_parameters import int_parameter
from search_backends.pair_encoding import PairEncoder
from search_backends.text_input import InputError, decode_text
from search_backends.tokenization import round_up
from triton_helpers import guarded, input_error_response, model_config, output_dtypes, parameters, respond, tensor_or_none, version_dir

FIELD_INPUTS = ("A_TYPE", "A_TITLE", "A_DESCRIPTION", "B_TYPE", "B_TITLE", "B_DESCRIPTION")


class TritonPythonModel:
    def initialize(self, args):
        config = model_config(args)
        params = parameters(config)
        self.dtypes = output_dtypes(config)
        self.pad_multiple = int_parameter(params, "pad_to_multiple_of", 8, minimum=1)
        self.encoder = PairEncoder.from_dir(version_dir(args) / params.get("tokenizer_dir", "tokenizer"),
                                            max_length=int_parameter(params, "max_length", 128, minimum=8),
                                            pad_to_multiple_of=self.pad_multiple,
                                            max_type_tokens=int_parameter(params, "max_type_tokens", 16, minimum=1))

    def _fields(self, request) -> list[list[str]]:
        """Six equally long columns for one request; a missing input or empty string is a missing field."""
        columns, rows = [], None
        for name in FIELD_INPUTS:
            values = tensor_or_none(request, name)
            if values is None:
                columns.append(None)
                continue
            column = [decode_text(v, field=name, allow_empty=True).strip() for v in values.reshape(-1)]
            if rows is not None and len(column) != rows:
                raise InputError(f"{name}: {len(column)} rows, other fields have {rows}")
            rows = len(column)
            columns.append(column)
        if rows is None:
            raise InputError("a product pair needs at least one field per product (A_TITLE, B_TITLE, ...): "
                             f"all of {', '.join(FIELD_INPUTS)} are missing")
        columns = [c if c is not None else [""] * rows for c in columns]
        for r in range(rows):
            for side in (0, 3):
                if not any(columns[c][r] for c in range(side, side + 3)):
                    names = FIELD_INPUTS[side:side + 3]
                    raise InputError(f"row {r}: product {names[0][0]} has no text: {', '.join(names)} are all "
                                     "missing or empty; each product needs at least one non-empty field")
        return columns

    @guarded
    def execute(self, requests):
        responses, columns, spans = [None] * len(requests), [[] for _ in FIELD_INPUTS], []
        for i, request in enumerate(requests):
            try:
                fields = self._fields(request)
            except InputError as exc:
                responses[i] = input_error_response(str(exc))
                continue
            start = len(columns[0])
            for column, values in zip(columns, fields):
                column.extend(values)
            spans.append((i, start, len(columns[0])))
        if spans:
            batch = self.encoder.encode(*columns)  # one tokenizer call for every field of every request
            for i, start, stop in spans:
                width = round_up(max(int(batch.attention_mask[start:stop].sum(axis=1).max()), 1), self.pad_multiple)
                rows = batch.rows(start, stop, width)
                responses[i] = respond({"input_ids": rows.input_ids, "attention_mask": rows.attention_mask,
                                        "token_type_ids": rows.token_type_ids}, self.dtypes)
        return responses
