#!/usr/bin/env bash
# Re-vendor the web page's image viewer from the npm registry (OpenSeadragon, BSD-3-Clause): the
# gateway serves these files itself, so the page needs no CDN. Run it to upgrade; commit the result.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=${1:-6.1.1}
DEST=services/gateway/cirasa/gateway/web/static/vendor/openseadragon
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "openseadragon@$VERSION" >/dev/null && tar xzf "openseadragon-$VERSION.tgz")
rm -rf "$DEST"
mkdir -p "$DEST"
cp "$work/package/build/openseadragon/openseadragon.min.js" "$work/package/LICENSE.txt" "$DEST/"
cp -r "$work/package/build/openseadragon/images" "$DEST/"
echo "openseadragon $VERSION from the npm registry (npm pack openseadragon@$VERSION)" > "$DEST/VERSION"
echo "vendored openseadragon $VERSION into $DEST"
