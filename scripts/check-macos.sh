#!/usr/bin/env bash
# Checks that the whole workspace builds for macOS (aarch64-apple-darwin):
# `cargo check` and `cargo clippy -D warnings` of every target (libraries,
# tests, examples, benches), without linking, so no macOS SDK is needed.
#
# Linux is the supported platform; elsewhere the Linux-only operations
# return `Unsupported` (see ARCHITECTURE.md, "Platforms"), and this check
# keeps that promise from rotting. The target's standard library is
# installed with rustup when missing. Without rustup (a distribution's
# Rust, say) the check is skipped with a message, not failed.
set -euo pipefail
cd "$(dirname "$0")/.."
target=aarch64-apple-darwin

if ! command -v rustup >/dev/null 2>&1; then
    echo "SKIP: rustup is not installed, so the $target standard library cannot be added; the macOS build is not checked"
    exit 0
fi
if ! rustup target list --installed | grep -qx "$target"; then
    echo "installing the $target standard library (rustup target add)"
    rustup target add "$target"
fi
cargo check --workspace --all-targets --target "$target"
cargo clippy --workspace --all-targets --target "$target" -- -D warnings
echo "ok: the workspace builds for $target"
