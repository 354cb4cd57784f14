# The two commands of the README. Both install what they need first (scripts/setup.sh).
.PHONY: demo test setup

setup:
	@bash scripts/setup.sh

# The main job on the embedded default: the int8 models that ship inside the package, benchmarked
# on this CPU on the embedded FER2013 sample (offline): comparison table + Pareto plot.
demo: setup
	rm -rf runs/demo-bench
	.venv/bin/edgefer bench --shipped --min-seconds 1 --out runs/demo-bench

# Two pytest workers (pytest-xdist): much of the suite is single-threaded (TFLite conversion, runtime
# start-up, emulated Pi), so the two cores overlap it. `.venv/bin/python -m pytest tests/x.py` runs one file.
test: setup
	.venv/bin/python -m pytest -n 2
