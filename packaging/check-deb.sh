#!/usr/bin/env bash
# Checks a storebox .deb (issue 7: "the package installs and its unit file verifies"):
#
# 1. Its contents (dpkg-deb --contents): every file where the unit, the README and udev expect
#    it, with its mode; the same bytes as in the repository; no config or key shipped.
# 2. Its control data: Depends is libc6 alone and covers the binary's glibc symbol versions;
#    the binary links nothing but glibc and libgcc_s; the example config is a conffile.
# 3. Installs it with dpkg into a scratch root, maintainer scripts included (run chrootless
#    with DPKG_ROOT, as dpkg --root --force-script-chrootless does), then checks the user,
#    groups and /etc/storebox they made, that the service was NOT enabled on a box with no
#    config, and `systemd-analyze verify` on the installed unit.
# 4. A second root provisioned beforehand (config and store key in place): the service IS
#    enabled. Reinstall (the upgrade path) and purge: the store's config and key stay.
#
# Usage: packaging/check-deb.sh path/to/storebox_*.deb
# Needs dpkg, binutils (objdump, readelf) and the systemd package's tools (systemd-analyze,
# systemd-sysusers, systemctl); run as root (dpkg --root writes files owned by root).
set -euo pipefail

deb=$(realpath "$1")
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fail() {
    echo "check-deb: FAIL: $*" >&2
    exit 1
}
say() { echo "check-deb: $*"; }

# A missing tool skips the check with the reason, except under CI=true (.ci/run installs the
# systemd package there), as tests/systemd.rs does.
missing=""
for tool in dpkg dpkg-deb dpkg-query readelf objdump systemd-analyze systemd-sysusers systemctl; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
[ "$(id -u)" = 0 ] || missing="$missing root"
if [ -n "$missing" ]; then
    [ "${CI:-}" != true ] || fail "missing:$missing"
    echo "check-deb: skipping: missing$missing" >&2
    exit 0
fi

# ---- 1. Contents -----------------------------------------------------------------------------

# "path mode source" for every file the package must hold; the source is compared byte for byte
# after installation ("-" for the binary, which cargo-deb strips).
expected="\
usr/bin/storebox                         -rwxr-xr-x -
usr/lib/systemd/system/storebox.service  -rw-r--r-- systemd/storebox.service
usr/lib/sysusers.d/storebox.conf         -rw-r--r-- systemd/storebox.sysusers
usr/lib/modules-load.d/storebox.conf     -rw-r--r-- systemd/storebox-modules.conf
usr/lib/udev/rules.d/99-storebox.rules   -rw-r--r-- systemd/99-storebox.rules
etc/storebox/storebox.toml.example       -rw-r--r-- config/example-store.toml
usr/share/doc/storebox/README.md         -rw-r--r-- README.md
usr/share/doc/storebox/docs/decisions.md -rw-r--r-- docs/decisions.md
usr/share/doc/storebox/copyright         -rw-r--r-- -"

contents=$(dpkg-deb --contents "$deb")
# "-rw-r--r-- 0/0 1234 2026-11-23 00:00 ./usr/bin/storebox" → "./usr/bin/storebox -rw-r--r-- 0/0"
listing=$(awk '{print $6, $1, $2}' <<<"$contents" | sed 's| root/root$| 0/0|')
while read -r path mode _; do
    line=$(grep -E "^\./$path " <<<"$listing") || fail "$path is not in the package"
    [ "$line" = "./$path $mode 0/0" ] || fail "$path: got '$line', want mode $mode, owner root"
done <<<"$expected"
# The unit's Documentation= points at the README: it must not be compressed away.
grep -q '^Documentation=file:///usr/share/doc/storebox/README.md$' "$repo/systemd/storebox.service" ||
    fail "the unit's Documentation= no longer names /usr/share/doc/storebox/README.md"
# Never a store's own config or key: each box makes its own.
if grep -Eq '\./etc/storebox/(storebox\.toml|store\.key)$' <<<"$listing"; then
    fail "the package ships a config or a store key"
fi
say "contents: $(grep -c '^\./.* -' <<<"$listing") files, modes and owners as expected"

# ---- 2. Control data and the binary's links ----------------------------------------------------

depends=$(dpkg-deb --field "$deb" Depends)
[[ "$depends" =~ ^libc6\ \(\>=\ ([0-9]+\.[0-9]+)\)$ ]] || fail "Depends: '$depends', want libc6 (>= X.Y) alone"
libc_min=${BASH_REMATCH[1]}
dpkg-deb --info "$deb" conffiles | grep -qx /etc/storebox/storebox.toml.example ||
    fail "/etc/storebox/storebox.toml.example is not a conffile"
for script in postinst prerm postrm; do
    dpkg-deb --info "$deb" "$script" >"$work/$script" || fail "no $script in the package"
    cmp -s "$work/$script" "$repo/packaging/debian/$script" || fail "$script differs from packaging/debian/$script"
done

mkdir "$work/x"
dpkg-deb -x "$deb" "$work/x"
bin="$work/x/usr/bin/storebox"
needed=$(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort | tr '\n' ' ')
for lib in $needed; do
    case "$lib" in
    libc.so.6 | libm.so.6 | libgcc_s.so.1 | ld-linux-*.so.*) ;;
    *) fail "the binary links $lib; Depends names libc6 only" ;;
    esac
done
newest=$(objdump -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
[ "$(printf '%s\n%s\n' "$newest" "$libc_min" | sort -V | tail -1)" = "$libc_min" ] ||
    fail "the binary needs GLIBC_$newest, Depends says libc6 (>= $libc_min)"
if readelf -S "$bin" | grep -q '\.symtab'; then fail "the binary is not stripped"; fi
say "control: Depends: $depends (binary needs GLIBC_$newest; links $needed)"

# ---- 3. Install into a scratch root, a box with no config yet ----------------------------------

# dpkg --root with the maintainer scripts run in this system, DPKG_ROOT pointing at the root
# (the scripts handle it); --force-depends: the scratch root has no libc6 package.
dpkg_in() {
    local root=$1
    shift
    dpkg --root="$root" --log=/dev/null --force-script-chrootless --force-depends "$@"
}
new_root() {
    mkdir -p "$1/var/lib/dpkg/info" "$1/var/lib/dpkg/updates" "$1/etc"
    touch "$1/var/lib/dpkg/status"
}

fresh="$work/fresh"
new_root "$fresh"
dpkg_in "$fresh" --install "$deb" >"$work/install.log" 2>&1 || {
    cat "$work/install.log" >&2
    fail "dpkg --install into a scratch root failed"
}
grep -q 'storebox is installed but not enabled' "$work/install.log" ||
    fail "postinst did not say what to do next:$(cat "$work/install.log")"
[ "$(dpkg-query --admindir="$fresh/var/lib/dpkg" -W -f='${Status}' storebox)" = "install ok installed" ] ||
    fail "storebox is not 'install ok installed' in the scratch root"

while read -r path _ source; do
    [ -e "$fresh/$path" ] || fail "$path was not installed"
    if [ "$source" != - ]; then
        cmp -s "$fresh/$path" "$repo/$source" || fail "$path differs from $source"
    fi
done <<<"$expected"

user=$(grep '^storebox:' "$fresh/etc/passwd") || fail "postinst made no user storebox"
IFS=: read -r _ _ uid _ _ home shell <<<"$user"
[ "$uid" -gt 0 ] && [ "$uid" -lt 1000 ] || fail "storebox has uid $uid, not a system uid"
[ "$home" = /var/lib/storebox ] || fail "storebox's home is $home"
[[ "$shell" == */nologin ]] || fail "storebox's shell is $shell"
for group in storebox dialout lp input; do
    grep -q "^$group:" "$fresh/etc/group" || fail "postinst made no group $group"
done
[ "$(stat -c '%a %U:%G' "$fresh/etc/storebox")" = "755 root:root" ] ||
    fail "/etc/storebox is $(stat -c '%a %U:%G' "$fresh/etc/storebox")"
wants="etc/systemd/system/multi-user.target.wants/storebox.service"
[ ! -e "$fresh/$wants" ] && [ ! -L "$fresh/$wants" ] || fail "the service was enabled on a box with no config"
say "scratch root: installed, user storebox (uid $uid), groups, /etc/storebox 755 root:root, not enabled"

# The installed unit, as installed: verify resolves ExecStart=/usr/bin/storebox inside the root,
# and ExecReload='s /bin/kill, which procps puts on every standard Debian install (priority
# important; the package Recommends it, see Cargo.toml); the scratch root has no procps, so it
# gets this system's.
install -D -m 755 /bin/kill "$fresh/bin/kill"
if ! out=$(systemd-analyze verify --root="$fresh" --man=no --recursive-errors=no \
    /usr/lib/systemd/system/storebox.service 2>&1) || [ -n "$out" ]; then
    fail "systemd-analyze verify on the installed unit: $out"
fi
# And it is not blind: the same unit with a misspelt directive fails.
broken="$work/broken"
new_root "$broken"
cp -a "$fresh/usr" "$fresh/bin" "$broken/"
echo "ProtectSytem=strict" >>"$broken/usr/lib/systemd/system/storebox.service"
if systemd-analyze verify --root="$broken" --man=no --recursive-errors=no \
    /usr/lib/systemd/system/storebox.service >/dev/null 2>&1 &&
    [ -z "$(systemd-analyze verify --root="$broken" --man=no --recursive-errors=no \
        /usr/lib/systemd/system/storebox.service 2>&1)" ]; then
    fail "systemd-analyze verify --root let a misspelt directive through"
fi
say "scratch root: systemd-analyze verify on the installed unit: clean"

# The upgrade path (same version again: postinst configure with the old version as \$2).
dpkg_in "$fresh" --install "$deb" >"$work/upgrade.log" 2>&1 || {
    cat "$work/upgrade.log" >&2
    fail "reinstalling (upgrade path) failed"
}
[ ! -e "$fresh/$wants" ] || fail "an upgrade enabled the service"
dpkg_in "$fresh" --purge storebox >"$work/purge.log" 2>&1 || {
    cat "$work/purge.log" >&2
    fail "purge failed"
}
for path in usr/bin/storebox usr/lib/systemd/system/storebox.service etc/storebox/storebox.toml.example; do
    [ ! -e "$fresh/$path" ] || fail "$path is still there after purge"
done
say "scratch root: reinstalled (upgrade path) and purged"

# ---- 4. A box provisioned before the package came --------------------------------------------

prov="$work/provisioned"
new_root "$prov"
mkdir -p "$prov/etc/storebox"
"$bin" generate-config --store-id check-deb --name "check-deb" >"$prov/etc/storebox/storebox.toml" 2>/dev/null
echo "placeholder, never read" >"$prov/etc/storebox/store.key"
chmod 600 "$prov/etc/storebox/store.key"
dpkg_in "$prov" --install "$deb" >"$work/prov.log" 2>&1 || {
    cat "$work/prov.log" >&2
    fail "dpkg --install into a provisioned root failed"
}
[ "$(readlink "$prov/$wants")" = /usr/lib/systemd/system/storebox.service ] ||
    fail "the service was not enabled on a box with config and key: $(cat "$work/prov.log")"
dpkg_in "$prov" --purge storebox >"$work/prov-purge.log" 2>&1 || fail "purge (provisioned) failed"
[ ! -L "$prov/$wants" ] || fail "purge left the service enabled"
[ -f "$prov/etc/storebox/storebox.toml" ] && [ -f "$prov/etc/storebox/store.key" ] ||
    fail "purge removed the store's config or key"
say "provisioned root: enabled at install; purge disabled it and kept config and key"
say "ok: $(basename "$deb")"
