"""The shop's benchmark (`make bench`, `python -m tools.bench`): see __main__ and README "Benchmark"."""
