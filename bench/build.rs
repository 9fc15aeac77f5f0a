//! Compiles the compute kernels of `apps/kernels` natively (the C compiler
//! `cc` finds: gcc on Debian, at -O2 whatever the profile), as the reference
//! the `worker` benchmark compares the sandbox with. Their WebAssembly builds
//! are committed beside them (`apps/kernels/build.sh`).

const KERNELS: &[&str] = &["nbody", "matmul", "fft", "stencil", "sort"];

fn main() {
    println!("cargo::rerun-if-changed=apps/kernels/kernel.h");
    println!("cargo::rerun-if-changed=apps/kernels/kernel_main.h");
    for kernel in KERNELS {
        let source = format!("apps/kernels/{kernel}.c");
        println!("cargo::rerun-if-changed={source}");
        cc::Build::new()
            .file(&source)
            .define("QUORUM_NATIVE", None)
            .define("KERNEL_ENTRY", Some(format!("quorum_{kernel}_kernel").as_str()))
            .opt_level(2)
            .debug(false)
            .flag("-fno-math-errno")
            .warnings(true)
            .compile(&format!("quorum_kernel_{kernel}"));
    }
}
