//! The `tandem` binary: parses the command line and runs a subcommand (see [`cli`]).

mod cli;

use clap::Parser;

#[global_allocator]
static ALLOCATOR: tandem::memory::Allocator = tandem::memory::ALLOCATOR;

fn main() -> std::process::ExitCode {
    tandem::memory::set_up();
    tandem::failpoint::init_from_env();
    // Colors only on a terminal: a detached server's stderr is its log file.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_target(false).with_ansi(ansi).init();
    cli::run(cli::Cli::parse())
}
