"""The node's benchmark: ingest rate, time to result and peak memory (``make bench``).

The benchmark is not part of the test suite: it measures one run on the machine at hand and
writes ``build/bench.json``. See ``bench/README.md`` for what each figure means.
"""
