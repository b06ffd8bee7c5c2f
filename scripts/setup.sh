#!/usr/bin/env bash
# Create .venv with everything LLaQo needs (Python 3.11). `--test` adds the test tools and,
# where apt is usable, liblo-tools (oscsend/oscdump) for the OSC tests and MuseScore 3 for the
# annotated-score and plugin tests.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if [ "${1:-}" = "--test" ]; then
  .venv/bin/pip install -q -e ".[test]"
  if ! command -v oscsend >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get install -y -q liblo-tools >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q liblo-tools >/dev/null 2>&1)) \
      || echo "setup: liblo-tools not installed; OSC interoperability tests will skip"
  fi
  if ! command -v musescore3 >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get install -y -q musescore3 >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q musescore3 >/dev/null 2>&1)) \
      || echo "setup: musescore3 not installed; MuseScore tests will skip"
  fi
else
  .venv/bin/pip install -q -e .
fi
# tinysoundfont renders test fixtures and corpus takes; its declared pyaudio dependency (live
# playback, needs PortAudio headers) is never used here, so it is installed without dependencies.
.venv/bin/pip install -q --no-deps "tinysoundfont==0.3.7"
