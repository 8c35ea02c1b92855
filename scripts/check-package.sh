#!/usr/bin/env bash
# Checks that every library crate of the workspace can be published on its own.
#
# What is checked, for each member without `publish = false` (found with
# `cargo metadata`; cargo packages them in dependency order):
#   * `cargo package` accepts it: valid manifest, every dependency has a
#     version (path-only dev-dependencies such as mproc-testkit are stripped
#     by cargo, which is what we want), readme and license files present;
#   * the .crate holds README.md, LICENSE-MIT, LICENSE-APACHE and src/lib.rs
#     (the license files are symbolic links in the repository; cargo stores
#     their targets as plain files), and its manifest keeps keywords,
#     categories, readme and the docs.rs metadata;
#   * every include_str!/include_bytes! in the packaged sources names a file
#     inside the package (a doc test that includes ../../README.md builds in
#     the workspace but not from the .crate).
#
# What cannot be checked here: the mproc crates are not on crates.io, so
# `cargo publish --dry-run` of one crate cannot resolve its siblings from the
# registry. With CHECK_PACKAGE_VERIFY=1 the script lets cargo verify instead
# (`cargo package` of several interdependent crates builds each .crate
# against the others through a local overlay registry), which compiles the
# whole stack again: minutes on a small machine, so CI skips it by default.
# Not checked either: that docs.rs can build the `mpi` feature, and that
# the packaged tests run (integration tests use the unpublished
# mproc-testkit, and some unit tests read the workspace's fuzz corpora).
set -euo pipefail
cd "$(dirname "$0")/.."

crates=$(cargo metadata --no-deps --format-version 1 | python3 -c '
import json, sys
for p in json.load(sys.stdin)["packages"]:
    if p["publish"] is None:  # null: publishable anywhere; [] means publish = false
        print(p["name"])
')
[ -n "$crates" ] || { echo "FAIL: no publishable crate found"; exit 1; }
args=()
for c in $crates; do args+=(-p "$c"); done
echo "publishable crates: $(echo $crates)"

verify=(--no-verify)
[ "${CHECK_PACKAGE_VERIFY:-0}" = 1 ] && verify=()
# --allow-dirty: CI may run on a checkout with local changes; the contents
# are checked below either way.
cargo package --allow-dirty "${verify[@]}" "${args[@]}"

version=$(cargo metadata --no-deps --format-version 1 |
    python3 -c 'import json,sys; print({p["name"]: p["version"] for p in json.load(sys.stdin)["packages"]}["mproc"])')
tmp=$(mktemp -d /tmp/mproc-package.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail=0
for c in $crates; do
    crate="target/package/$c-$version.crate"
    if [ ! -f "$crate" ]; then echo "FAIL: $c: $crate missing"; fail=1; continue; fi
    bad=0
    tar -xzf "$crate" -C "$tmp"
    root="$tmp/$c-$version"
    for f in README.md LICENSE-MIT LICENSE-APACHE src/lib.rs; do
        [ -f "$root/$f" ] && [ ! -L "$root/$f" ] || { echo "FAIL: $c: $f not in the package"; bad=1; }
    done
    for key in '^keywords = ' '^categories = ' '^readme = "README.md"' '^\[package.metadata.docs.rs\]'; do
        grep -qE "$key" "$root/Cargo.toml" || { echo "FAIL: $c: manifest lacks $key"; bad=1; }
    done
    # Files named by include_str!/include_bytes!, relative to the including file.
    python3 - "$root" "$c" <<'EOF' || bad=1
import os, re, sys
root, name = os.path.realpath(sys.argv[1]), sys.argv[2]
bad = 0
for d, _, files in os.walk(root):
    for f in files:
        if not f.endswith(".rs"):
            continue
        src = os.path.join(d, f)
        text = open(src, encoding="utf-8", errors="replace").read()
        for m in re.finditer(r'include_(?:str|bytes)!\(\s*"([^"]+)"\s*\)', text):
            target = os.path.realpath(os.path.join(d, m.group(1)))
            if not target.startswith(root + os.sep) or not os.path.isfile(target):
                print(f"FAIL: {name}: {os.path.relpath(src, root)} includes {m.group(1)}, not in the package")
                bad = 1
sys.exit(bad)
EOF
    if [ "$bad" = 0 ]; then
        echo "ok: $c ($(tar -tzf "$crate" | wc -l) files)"
    else
        fail=1
    fi
done
exit $fail
