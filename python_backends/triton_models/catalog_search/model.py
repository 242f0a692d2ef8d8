"""Triton adapter: query embeddings -> top-k catalog items (FAISS in the model folder, or Milvus)."""

from __future__ import annotations

import numpy as np

from search_backends.contracts import search_bar as C
from search_backends.catalog_index import check_queries, open_catalog, padded, top_k_of_request
from search_backends.model_parameters import int_parameter
from triton_helpers import guarded, input_error_response, model_setup, respond, tensor_or_none, utf8


class TritonPythonModel:
    def initialize(self, args):
        setup = model_setup(args)
        params = setup.params
        self.dtypes = setup.dtypes
        threads = int_parameter(params, C.PARAM_SEARCH_THREADS, 1, minimum=1, maximum=64)
        self.catalog = open_catalog(setup.folder / params.get(C.PARAM_CATALOG_DIR, C.CATALOG_DIR), threads=threads)

    @guarded
    def execute(self, requests):
        responses, spans, vectors = [None] * len(requests), [], []
        for i, request in enumerate(requests):
            embedding = tensor_or_none(request, C.EMBEDDING)
            try:
                k = top_k_of_request(tensor_or_none(request, C.TOP_K))
                if embedding is None:
                    raise ValueError(f"{C.EMBEDDING}: missing input")
                embedding = check_queries(embedding, self.catalog.dim)  # per request: a bad row fails alone
            except ValueError as exc:
                responses[i] = input_error_response(str(exc))
                continue
            start = sum(len(v) for v in vectors)
            spans.append((i, start, start + len(embedding), k))
            vectors.append(embedding)
        if vectors:
            # One search for the whole batch at the largest k asked; each request keeps its own k.
            hits = self.catalog.search(np.concatenate(vectors), max(k for *_, k in spans))
            for i, start, stop, k in spans:
                found = padded(hits[start:stop])
                responses[i] = respond(
                    {name: (utf8(v[:, :k]) if v.dtype == object else v[:, :k]) for name, v in found.items()},
                    self.dtypes,
                )
        return responses
