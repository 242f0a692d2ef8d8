"""Fit the lexicon repair's word reranker (`search_backends.spell_rerank`) and write `word_reranker.json`.

    searchbar train reranker --checkpoint models/spell_bart [--pairs 40000] [--seed 2027]

The defaults are the settings of the shipped `models/spell_bart/word_reranker.json`.

Data: fresh query pairs of the spell training distribution (`spell_data.build_dataset`, the same held-out
split as the model's training, a seed of its own): every word the repair would reconsider becomes one
group (the typed word plus its lexicon candidates) labelled with the word that was meant; words typed
correctly are groups too, labelled "keep". Groups whose intended word is not among the candidates teach
nothing and are counted, not used. The fit is a conditional logit (softmax over a group's candidates) with a
small L2 penalty, by L-BFGS; a fifth of the groups is held aside and the report gives the accuracy there.
No evaluation file is read (only the music file's misspellings are excluded, as in the model's training).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np

from search_backends.contracts.spell_correct import RERANKER_FILE
from search_backends.spell_guard import SpellGuard
from search_backends.spell_rerank import FEATURES, ErrorModel, WordReranker, candidate_features

from search_build.training.spell_data import EVAL_QUERIES, build_dataset, misspelled_words, real_misspelling_pairs


def model_outputs(checkpoint: Path, queries: list[str], batch: int = 64, progress=None) -> list[str]:
    """The raw model's corrections (CTranslate2, the checkpoint's generation settings: what serving decodes)."""
    from search_backends.spell_codec import SpellTextCodec
    from search_backends.spell_generation import GenerationDefaults
    from search_backends.spell_generation.ct2_engine import CTranslate2Generation

    from search_build.export.spell_ct2 import converted_model

    codec = SpellTextCodec(checkpoint)
    params = GenerationDefaults.from_model_dir(checkpoint).resolve()
    engine = CTranslate2Generation(converted_model(checkpoint), intra_threads=2)
    heads = [head for head, _ in codec.prepare(queries)]
    out = []
    for start in range(0, len(heads), batch):
        chunk = heads[start : start + batch]
        ids, mask = codec.encode(chunk)
        out += codec.decode_heads(engine.generate(ids, mask, [params] * len(chunk)))
        if progress is not None:
            progress.update(len(chunk))
    return out


def word_groups(repair, pairs, outputs, limit: int, errors: ErrorModel | None = None, progress=None):
    """(feature matrix, index of the intended candidate) per reconsidered word, and how many had no candidate."""
    groups, missed = [], 0
    for (typed_query, clean_query), output in zip(pairs, outputs):
        typed, clean, proposed = typed_query.split(), clean_query.split(), output.split()
        if len(typed) != len(clean):
            continue  # a lost space: not a word-for-word repair
        if len(proposed) != len(typed):
            proposed = typed  # the model split or merged words: no word of its own at each place
        for i, (word, meant, model_word) in enumerate(zip(typed, clean, proposed)):
            if not repair.wants(word):
                continue
            left = typed[i - 1] if i else None
            right = typed[i + 1] if i + 1 < len(typed) else None
            model_word = model_word if model_word != word and model_word.isalpha() else None
            found = repair.candidates(word, [model_word] if model_word else [], limit=limit)
            words = [c.word for c in found]
            if meant not in words:
                missed += 1
                continue
            rows = [
                candidate_features(word, c, repair.lexicon, repair.in_context(c.word, left, right), errors, model_word)
                for c in found
            ]
            groups.append((np.asarray(rows, dtype=np.float64), words.index(meant)))
        if progress is not None:
            progress.update(1)
    return groups, missed


def fit(groups, l2: float = 1e-3) -> np.ndarray:
    """Weights maximising the mean log-probability of each group's intended candidate."""
    from scipy.optimize import minimize

    features = np.concatenate([x for x, _ in groups])
    offsets = np.cumsum([0] + [len(x) for x, _ in groups])
    targets = offsets[:-1] + np.asarray([y for _, y in groups])
    group_of = np.repeat(np.arange(len(groups)), [len(x) for x, _ in groups])

    def loss(w):
        scores = features @ w
        top = np.maximum.reduceat(scores, offsets[:-1])
        exp = np.exp(scores - top[group_of])
        total = np.add.reduceat(exp, offsets[:-1])
        log_like = scores[targets] - top - np.log(total)
        prob = exp / total[group_of]
        grad = features.T @ prob - features[targets].sum(axis=0)
        n = len(groups)
        return -log_like.sum() / n + l2 * w @ w, grad / n + 2 * l2 * w

    result = minimize(loss, np.zeros(features.shape[1]), jac=True, method="L-BFGS-B")
    return result.x


def accuracy(weights: np.ndarray, groups) -> dict:
    keep_groups = [(x, y) for x, y in groups if x[y][FEATURES.index("keep")] == 1.0]
    fix_groups = [(x, y) for x, y in groups if x[y][FEATURES.index("keep")] != 1.0]

    def share(subset):
        return round(float(np.mean([int(np.argmax(x @ weights)) == y for x, y in subset])), 4) if subset else None

    return {
        "groups": len(groups),
        "all": share(groups),
        "kept_when_correct": share(keep_groups),
        "fixed_when_misspelled": share(fix_groups),
    }


def add_arguments(parser) -> None:
    parser.add_argument("--checkpoint", default="models/spell_bart")
    parser.add_argument("--pairs", type=int, default=40000)
    parser.add_argument("--seed", type=int, default=2027, help="query stream (training used its own seeds)")
    parser.add_argument(
        "--real-share",
        type=float,
        default=0.5,
        help="share of the pairs in the held-out file's shape, from training-split real misspellings",
    )
    parser.add_argument("--gate-zipf", type=float, default=2.5, help="words at most this frequent are reconsidered")
    parser.add_argument("--keep-margin", type=float, default=0.5, help="added to the typed word's score")
    parser.add_argument("--max-candidates", type=int, default=24)
    parser.add_argument("--candidate-min-zipf", type=float, default=1.0, help="rarest lexicon word offered")
    parser.add_argument("--out", default=None, help=f"default: CHECKPOINT/{RERANKER_FILE}")


def run(args) -> None:
    from tqdm import tqdm

    started = time.perf_counter()
    guard = SpellGuard.from_model_dir(
        args.checkpoint,
        use_reranker=False,
        repair_below_zipf=args.gate_zipf,
        candidate_min_zipf=args.candidate_min_zipf,
    )
    if guard is None or guard.repair is None:
        raise SystemExit(f"{args.checkpoint}: no lexicon to rerank against")
    excluded = frozenset(misspelled_words(EVAL_QUERIES)) if EVAL_QUERIES.exists() else frozenset()
    dataset = build_dataset(seed=0, exclude_misspellings=excluded)
    # Real human misspellings (training split) teach the error model; the generator's pairs (synthetic noise,
    # fully correct queries) keep its other shapes.
    n_real = int(args.pairs * args.real_share) // 2
    pairs = real_misspelling_pairs(dataset, dataset.train_noise.real, n_real, seed=args.seed)
    pairs += dataset.pairs(args.pairs - 2 * n_real, seed=args.seed + 1)
    random.Random(args.seed).shuffle(pairs)
    errors = ErrorModel.fit((wrong, word) for word, wrongs in dataset.train_noise.real.items() for wrong in wrongs)
    with tqdm(total=len(pairs), desc="model outputs", unit="query") as progress:
        outputs = model_outputs(Path(args.checkpoint), [q for q, _ in pairs], progress=progress)
    with tqdm(total=len(pairs), desc="candidate groups", unit="query") as progress:
        groups, missed = word_groups(guard.repair, pairs, outputs, args.max_candidates, errors, progress)
    cut = len(groups) * 4 // 5
    weights = fit(groups[:cut])
    report = {
        "pairs": args.pairs,
        "seed": args.seed,
        "real_share": args.real_share,
        "groups_without_intended_candidate": missed,
        "train": accuracy(weights, groups[:cut]),
        "held_aside": accuracy(weights, groups[cut:]),
        "seconds": round(time.perf_counter() - started, 1),
    }
    reranker = WordReranker(
        dict(zip(FEATURES, map(float, weights))),
        args.keep_margin,
        args.gate_zipf,
        args.max_candidates,
        args.candidate_min_zipf,
        errors,
        report,
    )
    out = Path(args.out or Path(args.checkpoint) / RERANKER_FILE)
    reranker.save(out)
    print(f"wrote {out}: {report}")
    for name, value in sorted(reranker.weights.items(), key=lambda kv: -abs(kv[1])):
        print(f"  {name:>14} {value:+.3f}")


if __name__ == "__main__":
    from search_tools.cli import run_as_main

    run_as_main(__spec__.name)
