"""Performance benchmarks behind ``make bench`` (not part of ``make test``); see ``bench/run_all.py``."""
