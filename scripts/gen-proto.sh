#!/usr/bin/env bash
# Regenerates the TypeScript for proto/berth/v1/*.proto into OUT (default proto/gen).
# Needs protoc (Debian: protobuf-compiler) and the pinned ts-proto from node_modules.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-proto/gen}"
command -v protoc >/dev/null || { echo "protoc not found: apt-get install protobuf-compiler" >&2; exit 1; }
rm -rf "$out"
mkdir -p "$out"
protoc \
  --plugin=protoc-gen-ts_proto=./node_modules/.bin/protoc-gen-ts_proto \
  --ts_proto_out="$out" \
  --ts_proto_opt=outputServices=grpc-js,esModuleInterop=true,importSuffix=.js,env=node,forceLong=number,useOptionals=messages,oneof=unions-value,outputPartialMethods=false,exportCommonSymbols=false \
  -I proto \
  proto/berth/v1/*.proto
