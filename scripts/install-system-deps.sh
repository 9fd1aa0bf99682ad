#!/usr/bin/env bash
# System packages of the site's browser test (tests/test_site.py): Debian's chromium and chromium-driver.
#
# Installs only what is missing, found by the command it provides, and nothing else: no Node.js and no
# npm (the site takes MathJax 3 from PyPI, see the README's "The HTML site"). Asking apt for Debian's `npm`
# beside a Node.js from another source fails ("nodejs : Conflicts: npm"), which is why this script never does.
# Used by .ci/run; run it yourself (Debian/Ubuntu, as root or with sudo) to build and check the site locally.
set -euo pipefail

missing=()
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)

if [ ${#missing[@]} -eq 0 ]; then
  echo "system deps: chromium and chromedriver already installed, nothing to do"
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "system deps: missing ${missing[*]} and no apt-get on this machine; install a Chromium browser and its" \
       "chromedriver with your package manager (the site's browser test needs both)" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "system deps: installing ${missing[*]} needs root or sudo" >&2; exit 1; }
  SUDO=sudo
fi
echo "system deps: installing ${missing[*]} with apt-get"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
for cmd in chromedriver; do
  command -v "$cmd" >/dev/null || { echo "system deps: apt-get finished but '$cmd' is still not on PATH" >&2; exit 1; }
done
command -v chromium >/dev/null || command -v chromium-browser >/dev/null \
  || { echo "system deps: apt-get finished but no chromium on PATH" >&2; exit 1; }
echo "system deps: done ($(chromium --version 2>/dev/null || chromium-browser --version))"
