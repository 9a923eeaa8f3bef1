#!/usr/bin/env bash
# Regenerate the Python code for the KEDA external scaler protocol (src/ebb/scalers/_proto/).
# Needs grpcio-tools (in the dev extra). Run from anywhere: `scripts/gen_proto.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
OUT=src/ebb/scalers/_proto
"$PY" -m grpc_tools.protoc -I "$OUT" \
  --python_out="$OUT" --grpc_python_out="$OUT" --pyi_out="$OUT" \
  "$OUT/externalscaler.proto"
# protoc writes a top-level import; inside the ebb package it must be relative.
sed -i 's/^import externalscaler_pb2 as /from . import externalscaler_pb2 as /' "$OUT/externalscaler_pb2_grpc.py"
