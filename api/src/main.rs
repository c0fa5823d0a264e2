//! The `grantline` binary: see `grantline --help`.

/// jemalloc rather than glibc malloc: under sustained load glibc's per-thread arenas let the
/// server's RSS climb (about 1 KB per appended record, plus a step at every projection
/// snapshot), and malloc/free were a fifth of `verify`'s CPU. Measured side by side with
/// glibc and mimalloc in BENCHMARKS.md ("The allocator").
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    api::main()
}
