# The two commands: `make demo` (the main job on synthetic data) and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
WORKDIR ?= runs/demo
DEMO_CONFIG ?= configs/demo.py
DEMO_ARGS ?=
# Two test processes, a file each at a time (module fixtures stay in one process): most tests
# wait on one XLA compilation thread, so two processes keep both cores busy. Files go out in
# collection order (tests/conftest.py puts the slowest first), not xdist's order by test count.
TEST_WORKERS ?= 2

.PHONY: demo test test-beam venv lint bench clean

$(VENV)/bin/activate:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(VENV)/bin/activate requirements.txt setup.cfg pyproject.toml
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(PY) main.py --config=$(DEMO_CONFIG) --workdir=$(WORKDIR) $(DEMO_ARGS)

# Bytecode caches on (PYTHONDONTWRITEBYTECODE unset for the run): the run starts ~30 Python
# processes, and without .pyc files each one compiles the package and each worker rewrites
# every test file's asserts again (~6 s of CPU per worker).
test: venv
	env -u PYTHONDONTWRITEBYTECODE $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder tests

# The Apache Beam conversion path, in its own venv: apache-beam would move the main venv's
# protobuf, pillow, pyarrow and python-dateutil.
test-beam:
	test -x .venv-beam/bin/python || { $(PYTHON) -m venv .venv-beam || python3 -m venv .venv-beam; \
	  .venv-beam/bin/python -m pip install --quiet --upgrade pip; }
	.venv-beam/bin/python -m pip install --quiet -e '.[test,beam]'
	.venv-beam/bin/python -m pytest tests/test_beam.py

lint: venv
	$(VENV)/bin/ruff check .

bench: venv
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) benchmarks/pretrain_throughput.py

clean:
	rm -rf $(VENV) .venv-beam runs
