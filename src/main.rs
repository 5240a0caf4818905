//! The `calstatus` binary: parse the command line, set up logging, run,
//! print the error chain, exit with a documented code.
//!
//! Text logs format their fields with [`calstatus::text::LogFields`]: a
//! control character in a path or a calendar value is written as a visible
//! escape, so one event is always one line. Colours only on a terminal
//! (and never with `NO_COLOR`). JSON logs are escaped by serde, C1 and
//! bidi controls too ([`calstatus::text::JsonLogs`]).

use std::io::IsTerminal;
use std::process::ExitCode;

use calstatus::cli::{Cli, Command, LogFormat, run};
use calstatus::exit::Exit;
use calstatus::text::{Escaped, JsonLogs, LogFields};
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// jemalloc rather than glibc's malloc: parsing and planning allocate
/// many small strings on two threads and free them on others, which glibc
/// serves through its slow paths (a fifth of the CPU of `calstatus plan`,
/// BENCHMARKS.md). Only the binary chooses; the library never does.
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The daemon says what it does (info) and stamps its lines; one-shot
    // commands only warn, without time.
    let daemon = matches!(cli.command, Command::Run { .. });
    let default = if daemon {
        "calstatus=info"
    } else {
        "calstatus=warn"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match cli.log_format {
        LogFormat::Json => builder.json().with_writer(JsonLogs(std::io::stderr)).init(),
        LogFormat::Text => {
            let colour = std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            let builder = builder
                .with_ansi(colour)
                .fmt_fields(LogFields)
                .with_writer(std::io::stderr);
            if daemon {
                builder.init()
            } else {
                builder.without_time().init()
            }
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("calstatus: cannot start the async runtime: {}", Escaped(e));
            return Exit::Failure.into();
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code.into(),
        Err(e) => {
            eprintln!("calstatus: {}", Escaped(&e));
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {}", Escaped(cause));
            }
            Exit::Failure.into()
        }
    }
}
