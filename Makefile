# Two commands set everything up on a fresh machine:
#   make train   creates/refreshes .venv and trains on the embedded MNIST copy (offline)
#   make test    creates/refreshes .venv and runs the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv train test test-slow lint bench clean chromium

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

train: $(STAMP)
	$(BIN)/python main.py --dataset mnist --train --epoch 5

# The browser test (tests/test_explorer_browser.py) drives Debian's chromium. `make test` installs it when it is
# missing and this user may install packages (root, as on CI, or passwordless sudo); otherwise, or when apt-get
# fails, it says so in one line and that test skips, saying how to install it.
CHROMIUM := /usr/bin/chromium
CHROMIUM_LOG := $(VENV)/chromium-install.log

chromium: $(STAMP)
	@if [ -x $(CHROMIUM) ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then \
	  echo "make: no apt-get here to install chromium; install it yourself to run the browser test"; exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then as_root=; elif sudo -n true 2>/dev/null; then as_root="sudo -n"; else \
	  echo "make: chromium is missing and installing it needs root: sudo apt-get install chromium"; exit 0; fi; \
	echo "make: installing Debian's chromium for the browser test (apt-get; log: $(CHROMIUM_LOG))"; \
	($$as_root apt-get update -qq && $$as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
	  >$(CHROMIUM_LOG) 2>&1 || echo "make: apt-get could not install chromium (see $(CHROMIUM_LOG))"

test: $(STAMP) chromium
	$(BIN)/python -m ruff check .
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/python -m ruff check .

clean:
	rm -rf checkpoint logs samples
