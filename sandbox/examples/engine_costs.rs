//! Where the sandbox's time goes: runs one WASI command under wasmtime
//! configurations that differ in one instrumentation at a time (fuel
//! metering, epoch interruption, NaN canonicalization, bounds-check
//! strategy) and prints each one's median run time, relative to the plain
//! engine. Used for BENCHMARKS.md's profile of issue 17; not part of the
//! sandbox's API.
//!
//! ```text
//! cargo run --release -p quorum-sandbox --example engine_costs -- \
//!     bench/apps/kernels/nbody.wasm "2000000" [runs]
//! ```
//!
//! The module reads the second argument (plus a newline) on stdin. Every
//! configuration must print the same stdout; the example fails otherwise.
//! With `QUORUM_EMIT_CWASM=DIR` set, each configuration's compiled module is
//! also written to `DIR/N.cwasm` (an ELF object: `objdump -d` shows
//! Cranelift's code for the hot loops).

use std::time::{Duration, Instant};

use wasmtime::{Engine, Linker, Module, Store};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::{self, WasiP1Ctx};
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};

/// One engine configuration under test.
#[derive(Clone, Copy)]
struct Variant {
    name: &'static str,
    fuel: bool,
    epoch: bool,
    nan: bool,
    /// Explicit bounds checks instead of guard pages.
    bounds_checks: bool,
}

const VARIANTS: [Variant; 6] = [
    Variant { name: "plain", fuel: false, epoch: false, nan: false, bounds_checks: false },
    Variant { name: "epoch", fuel: false, epoch: true, nan: false, bounds_checks: false },
    Variant { name: "fuel", fuel: true, epoch: false, nan: false, bounds_checks: false },
    Variant { name: "fuel+epoch (sandbox)", fuel: true, epoch: true, nan: false, bounds_checks: false },
    Variant { name: "fuel+epoch+nan", fuel: true, epoch: true, nan: true, bounds_checks: false },
    Variant { name: "plain, explicit bounds checks", fuel: false, epoch: false, nan: false, bounds_checks: true },
];

fn main() -> wasmtime::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(input)) = (args.next(), args.next()) else {
        eprintln!("usage: engine_costs MODULE.wasm|.wat INPUT [RUNS]");
        std::process::exit(2);
    };
    let runs: usize = args.next().map(|runs| runs.parse()).transpose()?.unwrap_or(3);
    let bytes = std::fs::read(&path)?;
    let input = format!("{input}\n").into_bytes();

    let mut expected: Option<Vec<u8>> = None;
    let mut plain = None;
    println!("{path} input {:?}, median of {runs} runs", String::from_utf8_lossy(&input).trim());
    let emit = std::env::var_os("QUORUM_EMIT_CWASM").map(std::path::PathBuf::from);
    for (index, variant) in VARIANTS.into_iter().enumerate() {
        let engine = engine(variant)?;
        if let Some(dir) = &emit {
            std::fs::write(dir.join(format!("{index}.cwasm")), engine.precompile_module(&bytes)?)?;
        }
        let module = Module::new(&engine, &bytes)?;
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let (time, stdout) = run(&engine, &module, variant, &input)?;
            match &expected {
                None => expected = Some(stdout),
                Some(expected) if *expected == stdout => {}
                Some(_) => return Err(wasmtime::format_err!("{} printed another output", variant.name)),
            }
            times.push(time);
        }
        times.sort();
        let median = times[times.len() / 2];
        let base = *plain.get_or_insert(median);
        println!(
            "{:<32} {:>8.3} s  {:>5.3} of plain",
            variant.name,
            median.as_secs_f64(),
            base.as_secs_f64() / median.as_secs_f64()
        );
    }
    Ok(())
}

/// The sandbox's own configuration with `variant`'s instrumentation.
fn engine(variant: Variant) -> wasmtime::Result<Engine> {
    let mut config = quorum_sandbox::engine_config(variant.nan);
    config.consume_fuel(variant.fuel).epoch_interruption(variant.epoch);
    if variant.bounds_checks {
        config.memory_reservation(0).memory_guard_size(0).memory_reservation_for_growth(1 << 20);
    }
    Engine::new(&config)
}

/// One run: instantiate, call `_start`, return the time and stdout.
fn run(engine: &Engine, module: &Module, variant: Variant, input: &[u8]) -> wasmtime::Result<(Duration, Vec<u8>)> {
    let stdout = MemoryOutputPipe::new(1 << 20);
    let wasi = WasiCtxBuilder::new().stdin(MemoryInputPipe::new(input.to_vec())).stdout(stdout.clone()).build_p1();
    let mut linker: Linker<WasiP1Ctx> = Linker::new(engine);
    p1::add_to_linker_sync(&mut linker, |wasi| wasi)?;
    let mut store = Store::new(engine, wasi);
    if variant.fuel {
        store.set_fuel(u64::MAX)?;
    }
    if variant.epoch {
        // The engine's epoch never moves here: the checks run, never fire.
        store.set_epoch_deadline(u64::MAX);
    }
    let started = Instant::now();
    let instance = linker.instantiate(&mut store, module)?;
    let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
    match start.call(&mut store, ()) {
        Ok(()) => {}
        Err(error) => match error.downcast_ref::<wasmtime_wasi::I32Exit>() {
            Some(exit) if exit.0 == 0 => {}
            _ => return Err(error),
        },
    }
    Ok((started.elapsed(), stdout.contents().to_vec()))
}
