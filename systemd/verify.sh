#!/usr/bin/env bash
# Checks the unit files and the sysusers file, strictly: any warning is a failure.
#
#   systemd/verify.sh [BINDIR]     BINDIR holds built `relay` and `controller`
#                                  (default: target/debug; build them first)
#
# `systemd-analyze verify` checks that each ExecStart binary exists, so it runs on
# copies of the units whose /usr/local/bin/ prefix points at BINDIR. It exits 0
# on most unit mistakes (unknown keys, bad values are "ignoring" warnings), so any
# output at all fails here; SYSTEMD_LOG_LEVEL=warning keeps the manager's own
# info chatter out. Templates are checked through an instance (`relay@ci`).
set -euo pipefail
cd "$(dirname "$0")/.."

bindir=${1:-target/debug}
for bin in relay controller; do
    if [[ ! -x $bindir/$bin ]]; then
        echo "verify.sh: no $bindir/$bin; build first: cargo build -p relay -p controller" >&2
        exit 2
    fi
done
bindir=$(cd "$bindir" && pwd)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

units=()
for unit in systemd/*.service; do
    name=$(basename "$unit")
    if ! grep -q '^ExecStart=/usr/local/bin/' "$unit"; then
        echo "verify.sh: $unit: ExecStart must run a binary from /usr/local/bin/" >&2
        fail=1
    fi
    sed "s#/usr/local/bin/#$bindir/#g" "$unit" >"$tmp/$name"
    if [[ $name == *@.service ]]; then
        units+=("$tmp/${name%@.service}@ci.service")
    else
        units+=("$tmp/$name")
    fi
done
if ((${#units[@]} < 3)); then
    echo "verify.sh: expected at least 3 units in systemd/, found ${#units[@]}" >&2
    exit 1
fi

set +e
out=$(SYSTEMD_LOG_LEVEL=warning SYSTEMD_LOG_COLOR=0 \
    systemd-analyze verify --man=no --generators=no "${units[@]}" 2>&1)
rc=$?
set -e
if ((rc != 0)) || [[ -n $out ]]; then
    echo "verify.sh: systemd-analyze verify (exit $rc) on ${units[*]##*/}:" >&2
    printf '%s\n' "$out" >&2
    fail=1
fi

# The sysusers file, against an empty root: it must create the user and say nothing else.
mkdir -p "$tmp/root"
set +e
out=$(SYSTEMD_LOG_COLOR=0 systemd-sysusers --dry-run --root="$tmp/root" "$PWD/systemd/overlay.sysusers.conf" 2>&1)
rc=$?
set -e
if ((rc != 0)) || ! grep -q "^Creating user 'overlay'" <<<"$out" \
    || grep -qv -e '^Creating ' -e '^Would write ' <<<"$out"; then
    echo "verify.sh: systemd-sysusers (exit $rc) on systemd/overlay.sysusers.conf:" >&2
    printf '%s\n' "$out" >&2
    fail=1
fi

if ((fail)); then
    exit 1
fi
echo "systemd units ok: ${units[*]##*/} and overlay.sysusers.conf"
