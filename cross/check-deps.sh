#!/usr/bin/env bash
# The ARM boxes' dependency graph (issue 7, cross/README.md): for aarch64 and armv7, no crate
# that links a system C library or needs a C toolchain beyond a cross gcc (aws-lc, OpenSSL,
# libudev, bindgen, cmake), and the only crates that compile C are the two known to
# cross-compile with Debian's gcc-aarch64-linux-gnu / gcc-arm-linux-gnueabihf: libsqlite3-sys
# (the bundled SQLite amalgamation) and ring (its C and assembly). A new one fails here, to be
# checked for cross-compiling before it is let in. Reads Cargo.lock only: no build, no target
# std needed.
set -euo pipefail
cd "$(dirname "$0")/.."

forbidden='^(aws-lc-rs|aws-lc-sys|aws-lc-fips-sys|openssl|openssl-sys|openssl-src|native-tls|libudev|libudev-sys|udev|bindgen|cmake|pkg-config-sys) v'
status=0
for target in aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf; do
    # Build-time crates too: a build script is where a C library would be looked for or built.
    crates=$(cargo tree --locked --target "$target" -e normal,build --prefix none --format '{p}' |
        sed 's/ (.*//; s/ (\*)$//' | sort -u)
    if bad=$(grep -E "$forbidden" <<<"$crates"); then
        echo "cross/check-deps: $target pulls in: $(tr '\n' ' ' <<<"$bad")" >&2
        status=1
    fi
    # The crates whose build script uses cc, i.e. that compile C for the target.
    c_crates=$(cargo tree --locked --target "$target" -e normal,build -i cc --depth 1 \
        --prefix none --format '{p}' | sed 's/ (.*//' | grep -v '^cc v' | sed 's/ v.*//' | sort -u |
        tr '\n' ' ')
    if [ "$c_crates" != "libsqlite3-sys ring " ]; then
        echo "cross/check-deps: $target: C is compiled by: $c_crates(expected: libsqlite3-sys ring)" >&2
        status=1
    fi
    echo "cross/check-deps: $target: $(wc -l <<<"$crates") crates; none forbidden; C from: $c_crates"
done
exit $status
