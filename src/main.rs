//! The `mambu-migrate` binary: parse the command line, dispatch, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser;
use mambu_migrate::cli::Cli;

/// mimalloc: validate and run allocate a small map per rendered call; glibc's allocator spent
/// a third of `plan validate` in its free lists.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match mambu_migrate::cli::dispatch(cli) {
        Ok(code) => code.into(),
        Err(err) => {
            eprintln!("error: {err:#}");
            mambu_migrate::ExitStatus::of(&err).into()
        }
    }
}
