#!/usr/bin/env bash
# The package in a real chroot of a minimal Debian 12 (debootstrap --variant=minbase): no
# systemd, no systemd-sysusers, no udev, no DPKG_ROOT: the paths check-deb.sh does not take.
# postinst must make the user with groupadd/useradd, start nothing and print the next steps;
# the binary must run there (libc6 is all it needs); upgrade and purge keep config and key.
#
# Usage (as root): packaging/check-chroot.sh path/to/storebox_*.deb [chroot-dir]
# Without chroot-dir, debootstraps one into a temporary directory (needs the debootstrap
# package and Debian's mirror; about 80 s and 300 MB). By hand; not in .ci/run.
set -euo pipefail

deb=$(realpath "$1")
root=${2:-}
if [ -z "$root" ]; then
    root=$(mktemp -d)
    trap 'umount "$root/proc" 2>/dev/null || true; rm -rf "$root"' EXIT
    debootstrap --variant=minbase bookworm "$root" >/dev/null
else
    trap 'umount "$root/proc" 2>/dev/null || true' EXIT
fi
mount -t proc proc "$root/proc"
fail() {
    echo "check-chroot: FAIL: $*" >&2
    exit 1
}
in_root() { chroot "$root" "$@"; }

! in_root sh -c 'command -v systemd-sysusers || command -v systemctl' >/dev/null ||
    fail "the chroot has systemd; this check is for one without"
cp "$deb" "$root/tmp/storebox.deb"
out=$(in_root dpkg -i /tmp/storebox.deb 2>&1) || fail "dpkg -i: $out"
grep -q 'installed but not enabled' <<<"$out" || fail "no next steps: $out"
user=$(in_root getent passwd storebox) || fail "no user storebox"
[ "$(cut -d: -f6,7 <<<"$user")" = /var/lib/storebox:/usr/sbin/nologin ] || fail "user: $user"
for group in storebox dialout lp input; do
    in_root getent group "$group" >/dev/null || fail "no group $group"
done
[ "$(stat -c '%a %u:%g' "$root/etc/storebox")" = "755 0:0" ] || fail "/etc/storebox"
echo "check-chroot: installed without systemd: user and groups by useradd/groupadd, not started"

# The binary on a bare Debian 12: a config, its check, the store key.
in_root sh -c '(umask 027; storebox generate-config --store-id chroot-1 --name test \
    >/etc/storebox/storebox.toml 2>/dev/null) && chgrp storebox /etc/storebox/storebox.toml &&
    storebox check-config /etc/storebox/storebox.toml &&
    storebox init --config /etc/storebox/storebox.toml >/dev/null' || fail "storebox did not run"
out=$(in_root dpkg -i /tmp/storebox.deb 2>&1) || fail "upgrade: $out"
in_root dpkg --purge storebox >/dev/null 2>&1 || fail "purge"
[ -f "$root/etc/storebox/storebox.toml" ] && [ -f "$root/etc/storebox/store.key" ] ||
    fail "purge removed the config or the key"
[ ! -e "$root/usr/bin/storebox" ] || fail "purge left the binary"
echo "check-chroot: storebox ran (generate-config, check-config, init); upgrade; purge kept config and key"
