#!/usr/bin/env bash
# Makes sure Debian's Chromium is at /usr/bin/chromium for the browser tests (auth-server's
# browser_real suite drives it through playwright-core; Playwright's own browser download is not
# used). Installs the `chromium` package with apt-get when it is missing, quietly.
#
# Outside CI, not being able to install it is a note, and the browser tests skip themselves;
# with CI set it is a failure.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

in_ci() { [ -n "${CI:-}" ] && [ "${CI}" != "0" ] && [ "${CI}" != "false" ]; }

if [ -x "$CHROMIUM" ]; then
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo=(sudo -n); fi
fi

echo "ci: installing Debian's chromium"
log=$(mktemp)
if "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -qq update >"$log" 2>&1 \
  && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -qq install -y chromium >>"$log" 2>&1 \
  && [ -x "$CHROMIUM" ]; then
  rm -f "$log"
  echo "ci: $("$CHROMIUM" --version 2>/dev/null || echo chromium) installed"
  exit 0
fi

if in_ci; then
  echo "ci: could not install chromium, which the browser tests need under CI:" >&2
  cat "$log" >&2
  rm -f "$log"
  exit 1
fi
echo "ci: could not install chromium (see below); the browser tests will be skipped" >&2
tail -n 20 "$log" >&2
rm -f "$log"
exit 0
