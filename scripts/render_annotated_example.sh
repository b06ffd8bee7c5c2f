#!/usr/bin/env bash
# Render docs/annotated_example.png: the shipped example take annotated by `llaqo annotate` (embedded
# model) and printed by MuseScore 3, as a teacher would print it. Needs musescore3 (setup.sh --test).
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
.venv/bin/llaqo annotate examples/bwv66.6_take.flac --score examples/bwv66.6.musicxml \
  --out "$work/bwv66.6_annotated.musicxml" --model embedded
QT_QPA_PLATFORM=offscreen XDG_RUNTIME_DIR="$work" musescore3 -s -m -r 130 \
  -o "$work/page.png" "$work/bwv66.6_annotated.musicxml" >/dev/null 2>&1
pages=("$work"/page-*.png)
.venv/bin/python - "$work" "${pages[@]}" <<'PY'
"""Stack the printed pages (white paper, thin grey edge) into one image."""
import sys
from PIL import Image, ImageOps

pages = []
for path in sys.argv[2:]:
    drawn = Image.open(path).convert("RGBA")
    paper = Image.alpha_composite(Image.new("RGBA", drawn.size, "white"), drawn).convert("RGB")
    pages.append(ImageOps.expand(paper, border=2, fill=(180, 180, 180)))
sheet = Image.new("RGB", (max(p.width for p in pages), sum(p.height for p in pages)), "white")
y = 0
for page in pages:
    sheet.paste(page, (0, y))
    y += page.height
sheet.save("docs/annotated_example.png", optimize=True)
print(f"docs/annotated_example.png: {len(pages)} page(s), {sheet.width}x{sheet.height}")
PY
