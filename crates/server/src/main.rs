//! The `kordon` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use kordon_server::{cases, config::Config, http::hash_token};

#[derive(Parser)]
#[command(
    name = "kordon",
    version,
    about = "Real-time proximity alerting for GPS electronic monitoring"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service until SIGTERM or Ctrl-C.
    Run {
        #[arg(long, default_value = "config/kordon.toml")]
        config: PathBuf,
        /// Log format.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log: LogFormat,
    },
    /// Validate case files; exit code 1 with every error if any is wrong.
    CheckCases {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the SHA-256 to put in `http.tokens` for a token read from stdin.
    HashToken,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rumqttd=off"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run { config, log } => {
            init_logging(log);
            run(config)
        }
        Command::CheckCases { files } => check_cases(&files),
        Command::HashToken => {
            let mut token = String::new();
            if std::io::stdin().read_line(&mut token).is_err() || token.trim().is_empty() {
                eprintln!("kordon hash-token: give the token on stdin");
                return ExitCode::FAILURE;
            }
            println!("{}", hash_token(&token));
            ExitCode::SUCCESS
        }
    }
}

fn run(path: PathBuf) -> ExitCode {
    let config = match Config::load(&path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("kordon: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("kordon: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let running = match kordon_server::start(config).await {
            Ok(running) => running,
            Err(e) => {
                tracing::error!("{e}");
                eprintln!("kordon: {e}");
                return ExitCode::FAILURE;
            }
        };
        eprintln!(
            "kordon is running: broker {} · API http://{} · Ctrl-C stops it",
            running.broker_url, running.http_addr
        );
        wait_for_signal().await;
        running.shutdown().await;
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn check_cases(files: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    for path in files {
        match cases::read_case_file(path) {
            Ok(case) => {
                let report = kordon_core::validate_case(&case);
                for warning in &report.warnings {
                    println!("{}: warning: {warning}", path.display());
                }
                println!(
                    "{}: case {} is valid ({} orders)",
                    path.display(),
                    case.id,
                    case.orders.len()
                );
            }
            Err(e) => {
                failed = true;
                println!("{e}");
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
