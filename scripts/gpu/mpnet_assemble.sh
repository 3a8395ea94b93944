#!/usr/bin/env bash
# Run ON THE GPU HOST from the repository root, once per chunk, in consecutive device calls:
#   bash scripts/gpu/mpnet_assemble.sh K        # K = 0, 1, 2, ... (carry .devcarry/mpnet/<name>.tar.0K
#                                               #  and .devcarry/mpnet/SHA256SUMS with each call)
# Chunk K is checked against SHA256SUMS and appended to $MPNET_ASSEMBLY_DIR/<name>.tar (default
# /tmp/mpnet-assembly, outside the work tree, so it survives between calls while the host stays up).
# After the last chunk the whole tar is verified, unpacked to $MPNET_ASSEMBLY_DIR/<name>/, and the bf16
# model.safetensors verified; then `GELORA_MODELS_DIR=$MPNET_ASSEMBLY_DIR ... --model <name>` loads it.
# Built on the CPU side by scripts/gpu/mpnet_chunks.py. Environment: MPNET_CHUNK_DIR (default
# .devcarry/mpnet), MPNET_ASSEMBLY_DIR, MPNET_NAME (default mpnet-base).
set -euo pipefail
k="${1:?usage: mpnet_assemble.sh CHUNK_INDEX}"
src="${MPNET_CHUNK_DIR:-.devcarry/mpnet}"
dst="${MPNET_ASSEMBLY_DIR:-/tmp/mpnet-assembly}"
name="${MPNET_NAME:-mpnet-base}"
chunk="$(printf '%s.tar.%02d' "$name" "$k")"
sums="$src/SHA256SUMS"
[ -f "$sums" ] || { echo "error: $sums not found (carry it with every chunk)" >&2; exit 2; }
[ -f "$src/$chunk" ] || { echo "error: $src/$chunk not found" >&2; exit 2; }
n="$(grep -c "  $name\.tar\.[0-9][0-9]\$" "$sums")"
want() { awk -v f="$1" '$2 == f {print $1}' "$sums"; }
got="$(sha256sum "$src/$chunk" | cut -d' ' -f1)"
[ "$got" = "$(want "$chunk")" ] || { echo "error: $chunk sha256 $got does not match SHA256SUMS" >&2; exit 3; }
mkdir -p "$dst"
next_file="$dst/$name.next"
if [ "$k" -eq 0 ]; then
  rm -rf "${dst:?}/$name" "$dst/$name.tar"; echo 0 > "$next_file"
fi
next="$(cat "$next_file" 2>/dev/null || echo 0)"
if [ "$k" -lt "$next" ]; then echo "chunk $k already appended (next is $next)"; exit 0; fi
[ "$k" -eq "$next" ] || { echo "error: chunk $next must come before chunk $k" >&2; exit 4; }
cat "$src/$chunk" >> "$dst/$name.tar"
echo $((k + 1)) > "$next_file"
echo "appended $chunk ($((k + 1))/$n): $(stat -c %s "$dst/$name.tar") bytes"
if [ $((k + 1)) -eq "$n" ]; then
  got="$(sha256sum "$dst/$name.tar" | cut -d' ' -f1)"
  [ "$got" = "$(want "$name.tar")" ] || { echo "error: $name.tar sha256 $got does not match" >&2; exit 3; }
  tar -xf "$dst/$name.tar" -C "$dst"
  got="$(sha256sum "$dst/$name/model.safetensors" | cut -d' ' -f1)"
  [ "$got" = "$(want "$name/model.safetensors")" ] || { echo "error: model.safetensors sha256 mismatch" >&2; exit 3; }
  rm -f "$dst/$name.tar"
  echo "verified and unpacked: $dst/$name (use GELORA_MODELS_DIR=$dst and --model $name)"
fi
