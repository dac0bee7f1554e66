#!/usr/bin/env bash
# The C inside storebox, cross-compiled for the ARM boxes with Debian's cross gcc, on a machine
# that has no Rust standard library for those targets (cross/README.md, "What was verified").
#
# For each target, cargo runs the build scripts of libsqlite3-sys (the SQLite amalgamation) and
# ring (its C and assembly) with cross/config.toml's compilers; compiling the Rust code for the
# target then fails for want of its `core`, which --keep-going lets past. Then:
# - every object those build scripts made is an ELF object for the target's machine;
# - sqlite-smoke.c, linked against that SQLite by the cross gcc, runs under qemu-user and
#   commits to a WAL database with synchronous=FULL.
#
# Needs: apt-get install gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf qemu-user
# Not part of .ci/run (those packages are ~300 MB); run by hand when the C dependencies change.
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
target_dir=target/cross-c
# The bundled amalgamation's directory, for sqlite3.h.
sqlite_src=$(cargo metadata --format-version 1 --locked |
    grep -o '"manifest_path":"[^"]*/libsqlite3-sys-[^"]*/Cargo.toml"' | head -1 |
    sed 's/"manifest_path":"//; s|/Cargo.toml"||')

for spec in aarch64-unknown-linux-gnu:aarch64-linux-gnu:AArch64:qemu-aarch64 \
    armv7-unknown-linux-gnueabihf:arm-linux-gnueabihf:ARM:qemu-arm; do
    IFS=: read -r target prefix machine qemu <<<"$spec"
    command -v "$prefix-gcc" >/dev/null || { echo "no $prefix-gcc" >&2; exit 1; }
    # Expected to fail (no core for the target); the build scripts' success is read below.
    cargo --config cross/config.toml build --release --locked --keep-going --target "$target" \
        --target-dir "$target_dir" -p libsqlite3-sys -p ring >"$work/build-$target.log" 2>&1 || true
    if grep -q "failed to run custom build command" "$work/build-$target.log"; then
        cat "$work/build-$target.log" >&2
        echo "check-c: $target: a build script failed" >&2
        exit 1
    fi
    build="$target_dir/$target/release/build"
    # The newest, should earlier builds with other flags have left theirs.
    sqlite_lib=$(ls -t "$build"/libsqlite3-sys-*/out/libsqlite3.a | head -1)
    ring_libs=$(ls "$(ls -td "$build"/ring-*/out | head -1)"/libring_core_*.a)
    objects=0
    for lib in $sqlite_lib $ring_libs; do
        mkdir -p "$work/objs" && rm -f "$work/objs"/*
        (cd "$work/objs" && "$prefix-ar" x "$(realpath -m "$OLDPWD/$lib")")
        for obj in "$work/objs"/*; do
            got=$(readelf -h "$obj" | sed -n 's/ *Machine: *//p')
            [ "$got" = "$machine" ] || { echo "check-c: $obj is for $got, not $machine" >&2; exit 1; }
            objects=$((objects + 1))
        done
    done
    "$prefix-gcc" -O2 -I "$sqlite_src/sqlite3" cross/sqlite-smoke.c "$sqlite_lib" -lpthread -lm -ldl -o "$work/smoke-$target"
    ran=$("$qemu" -L "/usr/$prefix" "$work/smoke-$target" "$work/smoke-$target.sqlite3")
    echo "check-c: $target: $objects objects for $machine (SQLite, ring); under $qemu: $ran"
done
