#!/usr/bin/env bash
# Vendor the dashboard's charting library (uPlot, MIT) into src/ebb/web/static/vendor/ from its npm package,
# so pip users get it inside the wheel and the page never loads anything from a CDN.
# Run when bumping the version; commit the minified files and the LICENSE.
set -euo pipefail
VERSION="${1:-1.6.32}"
HERE="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$HERE/src/ebb/web/static/vendor"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && npm pack --silent "uplot@$VERSION" >/dev/null && tar xzf "uplot-$VERSION.tgz")
mkdir -p "$DEST"
cp "$WORK/package/dist/uPlot.iife.min.js" "$DEST/uPlot.iife.min.js"
cp "$WORK/package/dist/uPlot.min.css" "$DEST/uPlot.min.css"
cp "$WORK/package/LICENSE" "$DEST/uPlot.LICENSE"
echo "uplot $VERSION" > "$DEST/VERSIONS"
echo "vendored uPlot $VERSION into $DEST"
