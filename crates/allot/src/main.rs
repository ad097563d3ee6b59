use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = allot::cli::Cli::parse();
    if !matches!(
        cli.command,
        allot::cli::Cmd::Serve(_) | allot::cli::Cmd::Bench(_)
    ) {
        quiet_on_closed_pipe();
    }
    match allot::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `allot user list | head -1`: when the reader goes away, end quietly as other Unix tools do
/// (killed by SIGPIPE) instead of panicking in `println!`. Rust ignores SIGPIPE by default, which
/// the server keeps: a client that hangs up must never take it down.
fn quiet_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: restoring a signal's default disposition at start-up, before any other thread
    // writes to stdout; no handler code is installed.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
