#!/usr/bin/env bash
# Rebuilds the kernels' WebAssembly apps (committed beside their sources, so
# that neither the build nor CI needs clang). Debian: clang lld wasi-libc
# libclang-rt-14-dev-wasm32. SIMD128 on (-msimd128), as the native build
# vectorizes with SSE2 at -O2 (deterministic: relaxed SIMD is refused). The native builds are the bench crate's
# build.rs (gcc -O2 with the same -fno-math-errno).
set -euo pipefail
cd "$(dirname "$0")"
for kernel in nbody matmul fft stencil sort; do
    clang --target=wasm32-wasi --sysroot=/usr -O2 -msimd128 -fno-math-errno -Wl,--strip-all -o "$kernel.wasm" "$kernel.c"
done
