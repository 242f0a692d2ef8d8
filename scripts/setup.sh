#!/usr/bin/env bash
# One-command set-up on a bare Debian 12 / Python 3.11 machine (no GPU needed):
# system library for perf_analyzer, a virtual environment with tritonserver (nvidia-pytriton wheel),
# perf_analyzer (tritonclient 2.51.0), Model Analyzer, ONNX Runtime, transformers, CPU torch, Spark, FAISS, Milvus Lite.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${SEARCHBAR_VENV:-.venv}"
PY="${PYTHON:-python3}"

# perf_analyzer links libb64 from Debian; the Spark scoring job needs a Java 17 runtime (pyspark 4).
PACKAGES=()
ldconfig -p 2>/dev/null | grep -q 'libb64.so.0d' || PACKAGES+=(libb64-0d)
java -version 2>&1 | grep -q 'version "\(1[7-9]\|2[0-9]\)' || PACKAGES+=(openjdk-17-jre-headless)
if [ "${#PACKAGES[@]}" -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${PACKAGES[@]}" >/dev/null
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade "pip>=24" >/dev/null
# torch first, pinned to the CPU build so nothing later pulls a CUDA build.
"$VENV/bin/python" -m pip install -q "torch==2.13.0"
"$VENV/bin/python" -m pip install -q -e ".[dev,train]"
# Model Analyzer may pull a newer tritonclient or a perf-analyzer wheel that shadows bin/perf_analyzer.
"$VENV/bin/python" -m pip install -q "numpy<2"
# Model Analyzer's wheel also ships bin/perf_analyzer, built for glibc 2.38: put tritonclient's back.
"$VENV/bin/python" -m pip install -q --force-reinstall --no-deps "tritonclient==2.51.0"
"$VENV/bin/python" -m pip uninstall -y -q perf-analyzer >/dev/null 2>&1 || true
# A build writes a digest of its files into model_repository/*/config.pbtxt; git reads it as the committed zeros.
if command -v git >/dev/null 2>&1 && git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git config filter.artifact-digest.clean "$PY scripts/normalise_artifact_digest.py"
fi
"$VENV/bin/searchbar" doctor
