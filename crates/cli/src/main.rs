//! The `actorchat` binary: the chat server, and (`actorchat bench`) its load
//! generator. A crate of its own so that the server library does not depend
//! on the load generator: this is the one place the two are wired together.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing::info;
use tracing_subscriber::EnvFilter;

use actorchat::Config;

#[derive(Parser)]
#[command(
    name = "actorchat",
    version,
    about = "An actor-model chat server",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: Config,
}

#[derive(Subcommand)]
enum Command {
    /// Run the chat server (the default).
    Serve(Box<Config>),
    /// Load-test an actorchat server: `actorchat bench fanout --url ws://127.0.0.1:3000`.
    Bench(actorchat_bench::BenchArgs),
    /// Print a development token signed with the HS256 secret:
    /// `actorchat token --sub ada --name Ada --rooms 'team-*' --ttl 1h --auth-hs256-secret-file secret`.
    Token(actorchat::auth::TokenArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match cli.command {
        // The load generator owns stdout (its `--procs` workers report there).
        Some(Command::Bench(args)) => return actorchat_bench::run(args),
        Some(Command::Token(args)) => {
            return match actorchat::auth::issue(&args) {
                Ok(token) => {
                    println!("{token}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("actorchat token: {e}");
                    ExitCode::from(2)
                }
            };
        }
        Some(Command::Serve(config)) => *config,
        None => cli.serve,
    };
    // A value out of range is a usage error, like one clap refuses: status 2
    // and a sentence naming the flag.
    if let Err(e) = config.validate() {
        eprintln!("actorchat: invalid configuration: {e}");
        return ExitCode::from(2);
    }
    match serve(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("actorchat: {e:#}");
            // Storage that cannot be opened (unwritable data directory,
            // corrupt or newer database) is a set-up error, like a bad flag.
            match e.downcast_ref::<actorchat::StartError>() {
                Some(
                    actorchat::StartError::Storage(_)
                    | actorchat::StartError::Auth(_)
                    | actorchat::StartError::Cluster(_),
                ) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

fn serve(config: Config) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let (before, after) = actorchat::raise_fd_limit();
    info!(soft_before = ?before, soft_after = ?after, "open-file limit");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the Tokio runtime")?;
    runtime.block_on(async move {
        let bind = config.bind;
        let server = actorchat::start(config)
            .await
            .with_context(|| format!("cannot start the server on {bind}"))?;
        println!("actorchat is running: open http://{}", server.local_addr());
        tokio::select! {
            () = shutdown_signal() => info!("shutdown signal received"),
            () = server.shutdown_requested() => {}
        }
        server.shutdown().await;
        Ok(())
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
