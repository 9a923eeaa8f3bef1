"""ebb's benchmarks: `python -m bench` runs them all, `python -m bench.<name>` one; results in bench/results/."""
