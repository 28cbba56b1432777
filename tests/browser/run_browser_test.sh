#!/usr/bin/env bash
# Runs the dashboard browser test (dashboard_browser_test.cpp) for ctest:
#   run_browser_test.sh <dashboard_browser_test> <troupe binary>
# Installs Debian's chromium and chromium-driver if missing (as root, like
# scripts/bootstrap.sh), checks that headless Chromium runs here at all,
# then runs the driver. Exit 77 is "skipped" (ctest SKIP_RETURN_CODE), used
# only when Chromium cannot be installed or cannot run; the message says why.
# CHROMIUM and CHROMEDRIVER override the binaries' paths.
set -u
driver=$1
troupe=$2
chromium=${CHROMIUM:-/usr/bin/chromium}
chromedriver=${CHROMEDRIVER:-/usr/bin/chromedriver}

if [ ! -x "$chromium" ] || [ ! -x "$chromedriver" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "SKIP: $chromium or $chromedriver is missing and this is not root, so the Debian" \
         "packages chromium and chromium-driver cannot be installed (scripts/bootstrap.sh does)"
    exit 77
  fi
  echo "installing the Debian packages chromium and chromium-driver"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null 2>&1; then
    apt-get update -qq >/dev/null 2>&1
    if ! out=$(apt-get install -y -qq --no-install-recommends chromium chromium-driver 2>&1); then
      echo "SKIP: apt-get cannot install chromium and chromium-driver:"
      echo "$out" | tail -5
      exit 77
    fi
  fi
fi

# Can headless Chromium start here? (--no-sandbox: we may be root, and a
# container may not allow the user namespaces the sandbox needs.)
probe=$(mktemp -d)
out=$(timeout 60 "$chromium" --headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage \
      --user-data-dir="$probe/profile" --dump-dom 'data:text/html,<p>chromium-runs</p>' 2>&1)
rc=$?
rm -rf "$probe"
if [ $rc -ne 0 ] || ! grep -q '<p>chromium-runs</p>' <<<"$out"; then
  echo "SKIP: headless Chromium does not run here (exit $rc):"
  grep -v -i dbus <<<"$out" | tail -8
  exit 77
fi

exec "$driver" "$troupe" "$chromium" "$chromedriver"
