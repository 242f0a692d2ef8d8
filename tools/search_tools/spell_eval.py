"""`searchbar eval-spell PAIRS.tsv`: spell-correction quality, side by side with SymSpell, in one run.

Each line of PAIRS.tsv is `query<TAB>expected` (lines starting with # are comments); a pair whose two sides
are equal is a correct query that must come back unchanged. Reported per system:

- exact match: output == expected, over all pairs;
- misspelled fixed: share of misspelled queries whose output == expected;
- correct unchanged: share of correct queries returned as typed;
- changed into wrong: share of all queries whose output differs from both the input and the expected text.

Systems: the checkpoint in-process with the guard and without it (raw model = HF generate), the served
`spell_correct` ensemble with `--served URL`, and SymSpell (`symspellpy` lookup_compound with its bundled
English unigram + bigram dictionaries, max edit distance 2), the baseline a user would reach for. Queries are
compared after the serving normalisation (lower case, single spaces).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

from search_backends.contracts import spell_correct as S
from search_backends.spell_codec import normalize_query
from search_build.training.spell_data import read_pairs  # noqa: F401 - part of this module's API


@dataclass(frozen=True)
class SpellScores:
    system: str
    pairs: int
    exact_match: float
    misspelled_fixed: float
    correct_unchanged: float
    changed_into_wrong: float
    queries_per_s: float


def score(system: str, pairs: Sequence[tuple[str, str]], outputs: Sequence[str], seconds: float) -> SpellScores:
    outputs = [normalize_query(o) for o in outputs]
    misspelled = [o == e for (q, e), o in zip(pairs, outputs) if q != e]
    correct = [o == q for (q, e), o in zip(pairs, outputs) if q == e]
    wrong = [o != q and o != e for (q, e), o in zip(pairs, outputs)]

    def share(flags: list[bool]) -> float:
        return round(sum(flags) / len(flags), 4) if flags else float("nan")

    return SpellScores(
        system,
        len(pairs),
        share([o == e for (_, e), o in zip(pairs, outputs)]),
        share(misspelled),
        share(correct),
        share(wrong),
        round(len(pairs) / max(seconds, 1e-9), 1),
    )


class SymSpellBaseline:
    """symspellpy's compound lookup with the dictionaries it ships (unigrams 82,765 words, bigrams 243,342), or,
    as an ablation, with a lexicon of Zipf frequencies instead of its unigrams (its bigrams kept)."""

    def __init__(self, lexicon: dict[str, float] | None = None, max_edit_distance: int = 2, min_zipf: float = 1.5):
        from importlib.resources import files

        from symspellpy import SymSpell

        from search_backends.spell_guard import lexicon_index

        self.max_edit_distance = max_edit_distance
        data = files("symspellpy")
        if lexicon is None:
            self.sym = SymSpell(max_dictionary_edit_distance=max_edit_distance, prefix_length=7)
            self.sym.load_dictionary(str(data / "frequency_dictionary_en_82_765.txt"), term_index=0, count_index=1)
        else:
            self.sym = lexicon_index(lexicon, min_zipf, max_edit_distance)
        self.sym.load_bigram_dictionary(
            str(data / "frequency_bigramdictionary_en_243_342.txt"), term_index=0, count_index=2
        )

    def correct(self, texts: Sequence[str]) -> list[str]:
        out = []
        for text in texts:
            if not text.strip():
                out.append("")
                continue
            found = self.sym.lookup_compound(text, max_edit_distance=self.max_edit_distance, ignore_non_words=True)
            out.append(found[0].term if found else text)
        return out


def served_corrector(url: str, guard: bool = True, num_beams: int | None = None, batch: int = 16) -> Callable:
    import numpy as np
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)

    def correct(texts: Sequence[str]) -> list[str]:
        out = []
        for start in range(0, len(texts), batch):
            rows = np.array([[t.encode("utf-8")] for t in texts[start : start + batch]], dtype=np.object_)
            data = grpcclient.InferInput(S.TEXT, list(rows.shape), "BYTES")
            data.set_data_from_numpy(rows)
            params = {S.GUARD_PARAMETER: guard, **({S.CONTROL_INPUTS[S.NUM_BEAMS]: num_beams} if num_beams else {})}
            result = client.infer(S.SPELL_CORRECT, [data], parameters=params)
            out += [v[0].decode("utf-8") for v in result.as_numpy(S.CORRECTED)]
        return out

    return correct


def evaluate(pairs: Sequence[tuple[str, str]], systems: dict[str, Callable]) -> list[SpellScores]:
    """Each system corrects every query; a system may return (outputs, seconds) to report its own time."""
    queries = [q for q, _ in pairs]
    rows = []
    for name, correct in systems.items():
        started = time.perf_counter()
        outputs = correct(queries)
        seconds = time.perf_counter() - started
        if isinstance(outputs, tuple):
            outputs, seconds = outputs
        rows.append(score(name, pairs, outputs, seconds))
    return rows


class RawOnce:
    """The raw model's outputs per query list, decoded once and shared by the post-processing variants."""

    def __init__(self, corrector, **generation):
        self.corrector, self.generation, self.cache = corrector, generation, {}

    def __call__(self, texts: Sequence[str]) -> tuple[list[str], float]:
        key = tuple(texts)
        if key not in self.cache:
            started = time.perf_counter()
            outputs = self.corrector.correct(list(texts), guard=False, **self.generation)
            self.cache[key] = (outputs, time.perf_counter() - started)
        return self.cache[key]

    def post(self, guard) -> Callable:
        """Raw outputs through `guard`; the time reported is decoding + guard."""

        def correct(texts):
            outputs, seconds = self(texts)
            started = time.perf_counter()
            sources = [head for head, _ in self.corrector.codec.prepare(texts)]
            guarded = guard.apply_batch(sources, outputs)
            return guarded, seconds + time.perf_counter() - started

        return correct


def format_table(title: str, rows: Sequence[SpellScores]) -> str:
    lines = [
        f"### {title}",
        "",
        "| system | pairs | exact match | misspelled fixed | correct unchanged | changed into wrong | queries/s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r.system} | {r.pairs} | {r.exact_match:.1%} | {r.misspelled_fixed:.1%} | "
            f"{r.correct_unchanged:.1%} | {r.changed_into_wrong:.1%} | {r.queries_per_s:,.0f} |"
        )
    return "\n".join(lines)


def add_arguments(parser) -> None:
    parser.add_argument("pairs", nargs="+", help="TSV files of query<TAB>expected")
    parser.add_argument("--checkpoint", default=None, help="spell checkpoint (default: models/spell_bart)")
    parser.add_argument("--served", default=None, metavar="URL", help="also evaluate spell_correct at this gRPC URL")
    parser.add_argument("--num-beams", type=int, default=None, help="default: the checkpoint's generation_config")
    parser.add_argument("--no-baseline", action="store_true", help="skip SymSpell")
    parser.add_argument(
        "--tune",
        action="store_true",
        help="also a grid of the learnt repair's gate and keep margin (on a development file, never a held-out one)",
    )
    parser.add_argument("--json", default=None, help="write every table's rows to this JSON file")


def run(args) -> int:
    from search_backends.spell_corrector import SpellCorrector
    from search_backends.spell_guard import SpellGuard
    from search_build.pipelines.spell_correct import DEFAULT_CHECKPOINT, exported_graphs

    checkpoint = Path(args.checkpoint or DEFAULT_CHECKPOINT)
    corrector = SpellCorrector(exported_graphs(checkpoint), intra_op_threads=1)
    raw = RawOnce(corrector, **({"num_beams": args.num_beams} if args.num_beams else {}))
    systems: dict[str, Callable] = {"spell_bart raw (= HF generate)": raw}
    if corrector.guard is not None:
        shipped = corrector.guard
        learnt = shipped.repair is not None and shipped.repair.reranker is not None
        systems[f"spell_bart + guard + {'learnt ' if learnt else ''}repair (served default)"] = raw.post(shipped)
        if learnt:  # the ablation: the hand-set repair formula over its own candidates
            hand_set = SpellGuard.from_model_dir(checkpoint, shipped.min_gain, use_reranker=False)
            systems["spell_bart + guard + hand-set repair"] = raw.post(hand_set)
        systems["spell_bart + guard"] = raw.post(SpellGuard(shipped.lexicon, shipped.min_gain, None))
        if args.tune and learnt:
            import copy

            for gate in (2.0, 2.5):
                for margin in (0.0, 0.5, 1.0):
                    repair, reranker = copy.copy(shipped.repair), copy.copy(shipped.repair.reranker)
                    reranker.gate_zipf, reranker.keep_margin = gate, margin
                    repair.reranker, repair.repair_below_zipf = reranker, gate
                    systems[f"tune gate={gate} keep_margin={margin}"] = raw.post(
                        SpellGuard(shipped.lexicon, shipped.min_gain, repair)
                    )
    if args.served:
        systems["served spell_correct"] = served_corrector(args.served, guard=True, num_beams=args.num_beams)
    if not args.no_baseline:
        systems["SymSpell lookup_compound"] = SymSpellBaseline().correct
        if corrector.guard is not None:
            systems["SymSpell lookup_compound, project lexicon"] = SymSpellBaseline(corrector.guard.lexicon).correct
    results = {}
    for path in args.pairs:
        rows = evaluate(read_pairs(path), systems)
        print(format_table(Path(path).name, rows) + "\n", flush=True)
        results[str(path)] = [asdict(r) for r in rows]
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0
