# The two commands of the README. Both install what they need first (scripts/setup.sh).
.PHONY: demo test setup

setup:
	@bash scripts/setup.sh

# The main job on the embedded default: a short training of the traditional CNN on the
# FER2013 sample that ships inside the package, then its evaluation report.
demo: setup
	rm -rf runs/demo-cnn
	.venv/bin/edgefer train --model cnn --epochs 12 --out runs/demo-cnn
	.venv/bin/edgefer evaluate runs/demo-cnn

test: setup
	.venv/bin/python -m pytest
