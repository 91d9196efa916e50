#!/bin/sh
# Rebuild the vendored three.js bundle (src/unils/serve/static/three.min.js) from npm: only the classes
# the browser demo imports (scripts/three_entry.js), minified, with three.js' licence comment kept.
# three.js is MIT-licensed (src/unils/serve/static/three.LICENSE.txt). Needs node and npm.
set -eu
VERSION=${1:-0.187.0}
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d)
cd "$WORK"
npm init -y >/dev/null
npm install --no-audit --no-fund "three@$VERSION" esbuild@0.25 >/dev/null
cp "$HERE/three_entry.js" entry.js
npx esbuild entry.js --bundle --minify --format=esm --legal-comments=inline \
  --outfile="$HERE/../src/unils/serve/static/three.min.js"
cp node_modules/three/LICENSE "$HERE/../src/unils/serve/static/three.LICENSE.txt"
echo "three.js $VERSION bundled into src/unils/serve/static/three.min.js"
