# trimcage — see README.md. Everything installs itself on a fresh Debian 12 as root.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export TRIMCAGE_HOME ?= $(HOME)/.cache/trimcage
export TRIMCAGE_SAMPLES ?= $(TRIMCAGE_HOME)/samples

# Debian 12 packages the tool and its test suite use (names pinned to bookworm).
APT_PACKAGES := bubblewrap strace libseccomp2 mmdebstrap podman runc uidmap slirp4netns \
  docker.io docker-registry apache2-utils iproute2 gcc libc6-dev binutils zstd \
  python3-venv python3-pip ca-certificates curl postgresql-client libcap2-bin skopeo openssl

.PHONY: help deps install samples services demo test bench clean

help:
	@echo "make demo    install, build the nginx sample image, slim, verify and report it"
	@echo "make test    install, build the sample images, start the services, run the suite"
	@echo "make bench   measure speed, size, precision and protection (bench/RESULTS.md)"

deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=23,<27"
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: deps $(VENV)/.installed

samples: install
	$(PY) -m samples.build --all

services: install
	bash .ci/services.sh start

demo: install
	$(PY) -m samples.build nginx
	bash samples/demo.sh

test: install samples services
	$(PY) -m pytest -q tests

bench: install samples
	$(PY) bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) out bench/work
