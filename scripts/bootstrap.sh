#!/usr/bin/env bash
# Installs the Debian packages troupe builds with, and only those that are
# missing. Safe to run again: it does nothing when everything is present.
set -euo pipefail

packages=(
  g++ cmake make pkg-config
  libcaf-dev            # CAF 0.17.6: actors, scheduler, test DSL
  libsqlite3-dev        # the durable journal
  libcurl4-openssl-dev  # the model gateway's HTTP transport
  libcpp-httplib-dev    # the admin server (troupe serve); the fake model server in the tests
  nlohmann-json3-dev    # workflow state, event payloads
  libspdlog-dev         # runtime log
  libcli11-dev          # the troupe command line
  catch2                # tests (v2)
  prometheus-cpp-dev    # runtime metrics in Prometheus' text format
)
# Only for `make test` (--test): the dashboard's end-to-end test drives
# headless Chromium through chromedriver's WebDriver API (tests/browser/).
if [ "${1:-}" = "--test" ]; then
  packages+=(chromium chromium-driver)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "bootstrap: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "bootstrap: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
