"""`searchbar sweep`: pick a pipeline's serving configuration under its p99 latency budget.

1. Model Analyzer 1.46 ``profile`` (quick search, the only mode it allows for ensembles) on the
   pipeline's ensemble: max_batch_size x instance_count of every composing model (``model_analyzer``).
2. Our perf_analyzer stage on the *ensemble*: the default configuration, Model Analyzer's best
   composing settings and queue-delay variants of them (``candidates``), each served by its own tritonserver
   and driven with the same closed-loop load, the concurrency levels of the preset (``measure``).
3. The best candidate = highest throughput at any load level whose p99 stays within the budget.
4. Verification: default and chosen served again, alternately, ``verify_rounds`` times each (``choose``).
5. Reports (JSON, CSV, PNG, Model Analyzer's HTML; ``report``) and, with ``--apply``, the chosen batching
   written to the overrides file the build reads and to the model repository's config.pbtxt
   (old one kept as ``config.pbtxt.<stamp>.bak``); ``--dry-run`` prints the diff only (``apply``).

``orchestration`` runs the steps in order; ``command`` is the `searchbar sweep` argument handling.
"""
