"""`searchbar query`: send inputs to a served pipeline with tritonclient and print the outputs."""

from __future__ import annotations

import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from search_backends.contracts import search_bar as C


def add_arguments(parser) -> None:
    parser.add_argument("model", help="pipeline entry model, e.g. query_embedding")
    parser.add_argument("texts", nargs="*", help="texts for the model's first string input (one row each)")
    parser.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="value for a named input (repeat; same value on every row), e.g. TOP_K=5 or "
        "CORRECT_SPELLING=false; numbers and booleans follow the input's datatype",
    )
    parser.add_argument("--json", action="store_true", help="print JSON even where a readable view exists (search_bar)")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="request parameter, e.g. num_beams=4 (integers and floats are converted)",
    )
    parser.add_argument("--url", default="127.0.0.1:8001", help="gRPC address (or HTTP with --http)")
    parser.add_argument("--http", action="store_true")
    parser.add_argument("--full", action="store_true", help="print long vectors in full")


NUMPY_TYPES = {"BOOL": bool, "INT32": np.int32, "INT64": np.int64, "FP32": np.float32, "FP64": np.float64}


def _typed(value: str, datatype: str):
    if datatype == "BOOL":
        if value.lower() not in ("true", "false", "1", "0"):
            raise SystemExit(f"expected true or false, got {value!r}")
        return value.lower() in ("true", "1")
    if datatype not in NUMPY_TYPES:
        raise SystemExit(f"inputs of type {datatype} cannot be given on the command line")
    return NUMPY_TYPES[datatype](value)


def build_inputs(module, metadata: dict, texts: list[str], named: dict[str, str]):
    string_inputs = [i for i in metadata["inputs"] if i["datatype"] == "BYTES"]
    rows = max(len(texts), 1)
    inputs = []
    for spec in metadata["inputs"]:
        name, datatype = spec["name"], spec["datatype"]
        if name in named and datatype != "BYTES":
            array = np.full((rows, 1), _typed(named[name], datatype), dtype=NUMPY_TYPES[datatype])
        elif name in named:
            array = np.array([[named[name].encode("utf-8")]] * rows, dtype=np.object_)
        elif texts and string_inputs and spec is string_inputs[0]:
            array = np.array([[v.encode("utf-8")] for v in texts], dtype=np.object_)
        else:
            continue  # optional input left out
        tensor = module.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def _convert(value: str):
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(value.lower(), value)


def run(args) -> int:
    module = httpclient if args.http else grpcclient
    client = module.InferenceServerClient(args.url)
    metadata = client.get_model_metadata(args.model)
    if not isinstance(metadata, dict):
        from google.protobuf.json_format import MessageToDict

        metadata = MessageToDict(metadata, preserving_proto_field_name=True)
    named = dict(kv.split("=", 1) for kv in args.input)
    params = {k: _convert(v) for k, v in (kv.split("=", 1) for kv in args.param)}
    inputs = build_inputs(module, metadata, args.texts, named)
    if not inputs:
        print("nothing to send: give texts or --input NAME=VALUE", file=sys.stderr)
        return 2
    result = client.infer(args.model, inputs, parameters=params or None)
    if args.model == C.SEARCH_BAR and not args.json:
        from .search_bar_view import format_results

        print(format_results(args.texts or [named.get(C.TEXT, "")], result))
        return 0
    out = {}
    for spec in metadata["outputs"]:
        value = result.as_numpy(spec["name"])
        if value is None:
            continue
        if value.dtype == np.object_:
            value = np.vectorize(
                lambda b: b.decode("utf-8", "replace") if isinstance(b, bytes) else b, otypes=[object]
            )(value)
        listed = value.tolist()
        if not args.full and value.ndim >= 2 and value.shape[-1] > 8 and value.dtype != np.object_:
            listed = [
                [*map(lambda x: round(float(x), 5), row[:6]), f"... ({value.shape[-1]} values)"]
                for row in value.reshape(value.shape[0], -1).tolist()
            ]
        out[spec["name"]] = listed
    print(json.dumps(out, indent=2, ensure_ascii=False))
    return 0
