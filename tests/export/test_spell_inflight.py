"""In-flight batching over the exported spell graphs: jobs that arrive while others decode join at the next step,
finish on their own schedule, and still equal HF ``generate()`` token for token."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

from search_backends.spell_generation import GenerationDefaults, generate  # noqa: E402
from search_backends.spell_generation.inflight import InflightDecoder  # noqa: E402
from search_build.pipelines.spell_correct import exported_graphs  # noqa: E402
from support.spell import QUERIES, SPELL_DIR, hf_generate, onnx_runner, padded_like, spell_inputs  # noqa: E402

LONG = [f"{a} {b}" for a, b in zip(QUERIES, reversed(QUERIES))][:16]


@pytest.fixture(scope="module")
def engines():
    return onnx_runner(exported_graphs(SPELL_DIR))


@pytest.fixture(scope="module")
def defaults():
    return GenerationDefaults.from_model_dir(SPELL_DIR)


@pytest.fixture(scope="module")
def hf_model():
    return transformers.BartForConditionalGeneration.from_pretrained(SPELL_DIR).eval()


class Recorder:
    """Collects each job's answer with the scheduler iteration it came back at."""

    def __init__(self):
        self.answers: dict[str, tuple] = {}
        self.order: list[str] = []
        self.all_done = threading.Event()
        self.expected = 0

    def callback(self, name: str, decoder: InflightDecoder):
        def done(results, error):
            self.answers[name] = (results, error, decoder.iterations)
            self.order.append(name)
            if len(self.order) == self.expected:
                self.all_done.set()

        return done


def test_jobs_joining_mid_decode_equal_hf_and_leave_first(engines, defaults, hf_model):
    """A long beam-8 batch decodes; greedy and beam-4 jobs submitted at later steps finish before it ends, and
    every job equals HF generate() on its own rows."""
    joined_at: dict[str, int] = {}
    recorder = Recorder()
    decoder: InflightDecoder
    late_jobs = {
        "short_greedy": (["tayler swift"], 1, 3),
        "short_beam": (["metalica", "teh"], 4, 6),
    }

    def decode_step(*args):
        # Submit the late jobs from inside the engine call, at a known step of the long batch.
        for name, (texts, beams, at_step) in late_jobs.items():
            if decoder.iterations == at_step and name not in joined_at:
                joined_at[name] = decoder.iterations
                ids, mask = spell_inputs(texts)
                threading.Thread(
                    target=decoder.submit,
                    args=(
                        ids,
                        mask,
                        [defaults.resolve(num_beams=beams)] * len(texts),
                        recorder.callback(name, decoder),
                    ),
                ).start()
        return engines.decode_step(*args)

    decoder = InflightDecoder(engines.encode, decode_step, pad_id=1, max_cohorts=3)
    recorder.expected = 1 + len(late_jobs)
    long_ids, long_mask = spell_inputs(LONG)
    decoder.submit(long_ids, long_mask, [defaults.resolve(num_beams=8)] * len(LONG), recorder.callback("long", decoder))
    assert recorder.all_done.wait(120), recorder.order
    decoder.close()

    assert recorder.order[-1] == "long", recorder.order
    long_end = recorder.answers["long"][2]
    for name, (texts, beams, _) in late_jobs.items():
        results, error, finished_at = recorder.answers[name]
        assert error is None
        assert joined_at[name] < finished_at < long_end, (name, joined_at[name], finished_at, long_end)
        ids, mask = spell_inputs(texts)
        expected = hf_generate(hf_model, ids, mask, num_beams=beams)
        assert padded_like(results, expected, defaults.resolve(num_beams=beams)).tolist() == expected.tolist(), name
    results, error, _ = recorder.answers["long"]
    expected = hf_generate(hf_model, long_ids, long_mask, num_beams=8)
    assert error is None and padded_like(results, expected, defaults.resolve(num_beams=8)).tolist() == expected.tolist()


def test_jobs_beyond_max_cohorts_wait_and_start_together(engines, defaults):
    """With two cohorts live, jobs that arrive wait, then start as one cohort (one encoder call) when a cohort
    ends; their results still equal generate() alone."""
    encoder_rows: list[int] = []
    decoder: InflightDecoder
    late = [["metalica"], ["teh", "jazz"], ["beatels"]]
    answers: dict[int, list] = {}
    finished = threading.Event()
    short_queued = threading.Event()
    late_submitted = False

    def encode(ids, mask):
        encoder_rows.append(ids.shape[0])
        short_queued.wait(60)  # the long job's encode waits, so the short job is admitted as a second cohort
        return engines.encode(ids, mask)

    def decode_step(*args):
        nonlocal late_submitted
        if len(encoder_rows) == 2 and not late_submitted:
            late_submitted = True
            for k, texts in enumerate(late):  # two cohorts are live: these three jobs must wait together
                ids, mask = spell_inputs(texts)
                decoder.submit(ids, mask, [defaults.resolve(num_beams=2)] * len(texts), _keep(answers, k, finished))
        return engines.decode_step(*args)

    decoder = InflightDecoder(encode, decode_step, pad_id=1, max_cohorts=2)
    long_ids, long_mask = spell_inputs(LONG[:4])
    decoder.submit(long_ids, long_mask, [defaults.resolve(num_beams=4)] * 4, lambda results, error: None)
    while not encoder_rows:
        time.sleep(0.001)
    ids, mask = spell_inputs(["pink floyd dark sid"])
    decoder.submit(ids, mask, [defaults.resolve(num_beams=1)], lambda results, error: None)
    short_queued.set()
    assert finished.wait(120)
    decoder.close()
    assert encoder_rows == [4, 1, 4], encoder_rows  # the three waiting jobs (4 rows) started as one cohort
    for k, texts in enumerate(late):
        ids, mask = spell_inputs(texts)
        params = [defaults.resolve(num_beams=2)] * len(texts)
        assert answers[k] == generate(engines.encode, engines.decode_step, ids, mask, params)


def _keep(answers: dict, key: int, finished: threading.Event):
    def done(results, error):
        answers[key] = results
        if len(answers) == 3:
            finished.set()

    return done


def test_concurrent_submitters_with_mixed_controls_equal_generate_alone(engines, defaults):
    """Many threads submit jobs with different controls at random moments: each job's rows equal the same rows
    decoded alone by generate() (itself equal to HF, tests/export/test_spell_model.py)."""
    decoder = InflightDecoder(engines.encode, engines.decode_step, pad_id=1)
    options = [
        {"num_beams": 1},
        {"num_beams": 4},
        {"num_beams": 3, "no_repeat_ngram_size": 2},
        {"num_beams": 4, "length_penalty": 2.0, "early_stopping": "never"},
        {"num_beams": 1, "min_length": 12},
        {"num_beams": 2, "max_new_tokens": 4},
    ]
    jobs = [(QUERIES[i : i + 1 + i % 3], options[i % len(options)]) for i in range(0, 24)]
    rng = np.random.default_rng(7)
    answers: dict[int, list] = {}

    def run(index):
        texts, option = jobs[index]
        time.sleep(float(rng.uniform(0, 0.05)))
        ids, mask = spell_inputs(texts)
        answers[index] = decoder.decode(ids, mask, [defaults.resolve(**option)] * len(texts))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    decoder.close()
    for index, (texts, option) in enumerate(jobs):
        ids, mask = spell_inputs(texts)
        alone = generate(engines.encode, engines.decode_step, ids, mask, [defaults.resolve(**option)] * len(texts))
        assert answers[index] == alone, (texts, option)


def test_engine_failure_fails_only_its_cohort(engines, defaults):
    """An engine error answers the jobs decoding in that cohort with the error; the scheduler goes on."""
    failing = threading.Event()

    def decode_step(tokens, mask, past, cross):
        if failing.is_set() and tokens.shape[0] == 3:  # only the 3-row cohort below
            raise RuntimeError("engine fell over")
        return engines.decode_step(tokens, mask, past, cross)

    decoder = InflightDecoder(engines.encode, decode_step, pad_id=1)
    failing.set()
    ids, mask = spell_inputs(["metalica", "teh", "jazz"])
    with pytest.raises(RuntimeError, match="engine fell over"):
        decoder.decode(ids, mask, [defaults.resolve(num_beams=1)] * 3)
    ids, mask = spell_inputs(["beatels"])
    params = [defaults.resolve(num_beams=1)]
    assert decoder.decode(ids, mask, params) == generate(engines.encode, engines.decode_step, ids, mask, params)
    decoder.close()


def test_a_failing_callback_does_not_stop_the_scheduler(engines, defaults):
    decoder = InflightDecoder(engines.encode, engines.decode_step, pad_id=1)
    ids, mask = spell_inputs(["beatels"])
    params = [defaults.resolve(num_beams=1)]

    def broken(results, error):
        raise ValueError("callback bug")

    decoder.submit(ids, mask, params, broken)
    assert decoder.decode(ids, mask, params) == generate(engines.encode, engines.decode_step, ids, mask, params)
    decoder.close()


def test_row_budget_holds_submitters_back_until_rows_free(engines, defaults):
    """With a budget of 8 rows a second beam-8 job waits in submit() until the first has been answered; a job
    larger than the whole budget still runs (alone)."""
    decoder = InflightDecoder(engines.encode, engines.decode_step, pad_id=1, max_rows=8)
    ids, mask = spell_inputs(["pink floyd dark sid"])
    beam8 = [defaults.resolve(num_beams=8)]
    first_done = threading.Event()
    decoder.submit(ids, mask, beam8, lambda results, error: first_done.set())
    decoder.submit(ids, mask, beam8, lambda results, error: None)  # blocks until the first job is answered
    assert first_done.is_set()
    big_ids, big_mask = spell_inputs(QUERIES[:3])
    assert len(decoder.decode(big_ids, big_mask, beam8 * 3)) == 3  # 24 rows > 8
    decoder.close()
    with pytest.raises(RuntimeError, match="closed"):
        decoder.submit(ids, mask, beam8, lambda results, error: None)
