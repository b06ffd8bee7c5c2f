#!/usr/bin/env bash
# Render docs/annotated_example.png: the shipped example take annotated by `llaqo annotate` (embedded
# model) and printed by MuseScore 3 on one A4 page, as a teacher would print it. Needs musescore3
# (setup.sh --test).
#
# The annotated score keeps the example's own layout; only this print tightens it (staff space 1.6 mm
# instead of 1.75, staves and systems closer, as Format › Style would) so that the assessment at the top
# and all ten bars fit one page. MuseScore 3 applies a style given with -S when it saves a score, not when
# it prints one it has just imported, hence the two steps: MusicXML -> .mscx with the style, .mscx -> PNG.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
.venv/bin/llaqo annotate examples/bwv66.6_take.flac --score examples/bwv66.6.musicxml \
  --out "$work/bwv66.6_annotated.musicxml" --model embedded
cat > "$work/one_page.mss" <<'STYLE'
<?xml version="1.0" encoding="UTF-8"?>
<museScore version="3.01">
  <Style>
    <Spatium>1.6</Spatium>
    <staffDistance>5</staffDistance>
    <akkoladeDistance>5</akkoladeDistance>
    <minSystemDistance>7</minSystemDistance>
  </Style>
</museScore>
STYLE
musescore() { QT_QPA_PLATFORM=offscreen XDG_RUNTIME_DIR="$work" musescore3 -s -m "$@" >/dev/null 2>&1; }
musescore -S "$work/one_page.mss" -o "$work/annotated.mscx" "$work/bwv66.6_annotated.musicxml"
musescore -r 130 -o "$work/page.png" "$work/annotated.mscx"
.venv/bin/python - "$work"/page*.png <<'PY'
"""The printed page on white paper with a thin grey edge; more than one page is an error."""
import sys
from PIL import Image, ImageOps

if len(sys.argv) != 2:
    sys.exit(f"render_annotated_example: MuseScore printed {len(sys.argv) - 1} pages, not one")
drawn = Image.open(sys.argv[1]).convert("RGBA")  # MuseScore draws on a transparent page
paper = Image.alpha_composite(Image.new("RGBA", drawn.size, "white"), drawn).convert("RGB")
page = ImageOps.expand(paper, border=2, fill=(180, 180, 180))
page.save("docs/annotated_example.png", optimize=True)
print(f"docs/annotated_example.png: one page, {page.width}x{page.height}")
PY
