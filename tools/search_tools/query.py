"""`searchbar query`: send inputs to a served pipeline with tritonclient and print the outputs."""
from __future__ import annotations

import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient


def add_arguments(parser) -> None:
    parser.add_argument("model", help="pipeline entry model, e.g. query_embedding")
    parser.add_argument("texts", nargs="*", help="texts for the model's first string input (one row each)")
    parser.add_argument("--input", action="append", default=[], metavar="NAME=VALUE",
                        help="value for a named string input (repeat; same value on every row)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="request parameter, e.g. num_beams=4 (integers and floats are converted)")
    parser.add_argument("--url", default="127.0.0.1:8001", help="gRPC address (or HTTP with --http)")
    parser.add_argument("--http", action="store_true")
    parser.add_argument("--full", action="store_true", help="print long vectors in full")


def build_inputs(module, metadata: dict, texts: list[str], named: dict[str, str]):
    string_inputs = [i for i in metadata["inputs"] if i["datatype"] == "BYTES"]
    rows = max(len(texts), 1)
    inputs = []
    for spec in string_inputs:
        name = spec["name"]
        if name in named:
            values = [named[name]] * rows
        elif texts and spec is string_inputs[0]:
            values = texts
        else:
            continue  # optional input left out
        array = np.array([[v.encode("utf-8")] for v in values], dtype=np.object_)
        tensor = module.InferInput(name, list(array.shape), "BYTES")
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
    out = {}
    for spec in metadata["outputs"]:
        value = result.as_numpy(spec["name"])
        if value is None:
            continue
        if value.dtype == np.object_:
            value = np.vectorize(lambda b: b.decode("utf-8", "replace") if isinstance(b, bytes) else b,
                                 otypes=[object])(value)
        listed = value.tolist()
        if not args.full and value.ndim >= 2 and value.shape[-1] > 8 and value.dtype != np.object_:
            listed = [[*map(lambda x: round(float(x), 5), row[:6]), f"... ({value.shape[-1]} values)"]
                      for row in value.reshape(value.shape[0], -1).tolist()]
        out[spec["name"]] = listed
    print(json.dumps(out, indent=2, ensure_ascii=False))
    return 0
