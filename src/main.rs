//! The `tandem` binary: parses the command line and runs a subcommand (see [`cli`]).

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    tandem::failpoint::init_from_env();
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_target(false).init();
    cli::run(cli::Cli::parse())
}
