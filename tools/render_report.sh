#!/usr/bin/env bash
# Render a report.html in headless Chromium, as a reader's browser shows it and as it prints:
#   tools/render_report.sh runs/demo/report.html [OUT_DIR]
# writes OUT_DIR/report.png (a full-page screenshot, 1200 px wide) and OUT_DIR/report.pdf.
# Chromium comes from Debian's packages (apt-get install chromium); it is copied to a folder of
# its own first, so what renders is the page alone, as a reader who was mailed it sees it.
set -euo pipefail
page=${1:?usage: tools/render_report.sh REPORT.html [OUT_DIR]}
out=${2:-$(dirname "$page")/rendered}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
  echo "render_report: no Chromium found: apt-get install chromium" >&2
  exit 2
fi
mkdir -p "$out"
alone=$(mktemp -d)
trap 'rm -rf "$alone"' EXIT
cp "$page" "$alone/report.html"
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
       --disable-component-update --disable-sync --hide-scrollbars --user-data-dir="$alone/profile")
height=$(( $(grep -c '<figure>' "$alone/report.html") * 560 + 1400 ))
"$browser" "${flags[@]}" --window-size=1200,"$height" --screenshot="$out/report.png" "file://$alone/report.html" \
  2> "$out/chromium.log"
"$browser" "${flags[@]}" --no-pdf-header-footer --print-to-pdf="$out/report.pdf" "file://$alone/report.html" \
  2>> "$out/chromium.log"
echo "render_report: $out/report.png and $out/report.pdf"
