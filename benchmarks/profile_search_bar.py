"""Where a search-bar query's time goes: each in-process stage timed alone, one thread, on the served classes.

Writes (or reuses) a local repository with the search_bar pipeline, opens its stages the way the in-process bar
does (the spell stage from spell_generate's folder and config, the intent and embedding encoders, the catalog),
then runs the misspelled sample queries through them one at a time and prints per-stage medians, p90 and max, and
the per-query cost of whole batches of 2 and 4. The guard's lexicon repair is timed twice, side by side: as served
(candidates walked by falling frequency and left early) and ranking every near word (the reference it equals).

    python benchmarks/profile_search_bar.py [--repository DIR] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from search_backends.catalog_index import open_catalog
from search_backends.contracts import search_bar as C
from search_backends.contracts.spell_correct import INFLIGHT_PARAMETER, MODEL_DIR, MODEL_DIR_PARAMETER
from search_backends.model_parameters import config_string_parameters
from search_backends.spell_corrector import SpellStage, correct_batch
from search_backends.spell_guard import LexiconRepair
from search_backends.text_encoding import TextEncoder
from search_build.pipelines import build_pipeline
from search_build.repository.writer import write_repository
from search_tools.sample_queries import MISSPELLED_MUSIC_QUERIES

ROOT = Path(__file__).resolve().parents[1]


def _parameters(repo: Path, model: str) -> dict[str, str]:
    return config_string_parameters((repo / model / "config.pbtxt").read_text(encoding="utf-8"))


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - start) * 1e3


def _full_ranking(repair: LexiconRepair, typed, others, limit):
    return LexiconRepair.candidates(repair, typed, others)[: limit + 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", type=Path, default=None, help="a written local repository with search_bar")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "search_bar_stages.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = args.repository or write_repository(
            [build_pipeline(C.SEARCH_BAR)], Path(tmp) / "repo", "local", progress=lambda _: None
        )
        bar = _parameters(repo, C.SEARCH_BAR)
        spell_model, intent_model = bar[C.PARAM_SPELL_MODEL], bar[C.PARAM_INTENT_MODEL]
        embedding_model, catalog_model = bar[C.PARAM_EMBEDDING_MODEL], bar[C.PARAM_CATALOG_MODEL]
        spell_params = _parameters(repo, spell_model)
        spell_params.pop(INFLIGHT_PARAMETER, None)  # as the bar runs it: each batch decodes to the end
        spell = SpellStage.from_parameters(
            repo / spell_model / "1" / spell_params.get(MODEL_DIR_PARAMETER, MODEL_DIR), spell_params, threads=1
        )
        beams = int(bar.get(C.PARAM_SPELL_NUM_BEAMS, "0"))
        generation = spell.decoding.request_params({}, {"num_beams": beams} if beams else {})
        intent = TextEncoder.from_parameters(repo / intent_model / "1", _parameters(repo, intent_model), threads=1)
        embedding = TextEncoder.from_parameters(
            repo / embedding_model / "1", _parameters(repo, embedding_model), threads=1
        )
        catalog_params = _parameters(repo, catalog_model)
        catalog = open_catalog(
            repo / catalog_model / "1" / catalog_params.get(C.PARAM_CATALOG_DIR, C.CATALOG_DIR), threads=1
        )
        queries = list(MISSPELLED_MUSIC_QUERIES)
        stages = ("spell model", "guard + repair", "guard, full ranking", "intent", "embedding", "catalog search")
        times: dict[str, list[float]] = {s: [] for s in stages}
        repair = spell.guard.repair
        for query in queries[:5]:  # warm-up
            spell.correct([([query], [generation], [True])])
            intent.pooled([query])
            embedding.pooled([query])
        for r in range(args.rounds):
            for i, query in enumerate(queries):
                raw, ms = _timed(
                    lambda: correct_batch(
                        spell.codec, spell.decoding.decoder.decode, None, [query], [generation], [False]
                    )
                )
                times["spell model"].append(ms)
                # Both guards on the same words, in alternating order: the second call finds the lexicon warm.
                for served_first in ((r + i) % 2 == 0, (r + i) % 2 == 1):
                    if served_first:
                        fixed, ms = _timed(lambda: spell.guard.apply_where([query], raw, [True]))
                        times["guard + repair"].append(ms)
                    else:
                        served = repair._top_candidates
                        repair._top_candidates = lambda typed, others, limit: _full_ranking(
                            repair, typed, others, limit
                        )
                        reference, ms = _timed(lambda: spell.guard.apply_where([query], raw, [True]))
                        repair._top_candidates = served
                        times["guard, full ranking"].append(ms)
                assert reference == fixed, (query, reference, fixed)
                _, ms = _timed(lambda: intent.head.predict(intent.pooled(fixed), [(0, 1, 1)]))
                times["intent"].append(ms)
                vectors, ms = _timed(lambda: embedding.pooled(fixed))
                times["embedding"].append(ms)
                _, ms = _timed(lambda: catalog.search(np.ascontiguousarray(vectors, np.float32), C.DEFAULT_TOP_K))
                times["catalog search"].append(ms)
        served_stages = [s for s in stages if s != "guard, full ranking"]
        totals = [sum(row) for row in zip(*(times[s] for s in served_stages))]
        report = {"queries": len(queries), "rounds": args.rounds, "stages_ms": {}, "batched_ms_per_query": {}}
        print(f"{len(queries)} misspelled queries x {args.rounds} rounds, one at a time, one thread (ms)")
        print(f"{'stage':22s} {'p50':>7s} {'p90':>7s} {'max':>7s}")
        for name, values in [*times.items(), ("total (served stages)", totals)]:
            row = {"p50": float(np.median(values)), "p90": float(np.percentile(values, 90)), "max": float(max(values))}
            report["stages_ms"][name] = row
            print(f"{name:22s} {row['p50']:7.2f} {row['p90']:7.2f} {row['max']:7.2f}")
        guard, full = sum(times["guard + repair"]), sum(times["guard, full ranking"])
        print(
            f"guard + repair as served: x{full / guard:.2f} faster in all than ranking every near word (same outputs)"
        )
        for size in (2, 4):
            batch = queries[:size]

            def run_batch():
                fixed = spell.correct([(batch, [generation] * size, [True] * size)])[0]
                intent.head.predict(intent.pooled(fixed), [(0, size, 1)])
                catalog.search(np.ascontiguousarray(embedding.pooled(fixed), np.float32), C.DEFAULT_TOP_K)

            run_batch()
            _, ms = _timed(lambda: [run_batch() for _ in range(10)])
            report["batched_ms_per_query"][size] = ms / 10 / size
            print(f"batch of {size}: {ms / 10 / size:.2f} ms per query")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
