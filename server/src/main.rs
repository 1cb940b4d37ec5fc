//! The `weft` command: `serve`, `wal`, `import`, `export`, `bench`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use weft_server::config::Config;

// mimalloc instead of glibc's allocator: the storage engine allocates and frees record
// states on writer threads and frees them on the flusher; with glibc that cost ~13 % of
// CPU under load; with mimalloc the engine sustains ~11 % more durable changes/s
// (docs/benchmarks.md, storage engine, "What moved it").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "weft", version, about = "Weft: a local-first sync database server", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the sync server (embedded SQLite storage; data in ./weft-data by default).
    Serve(ServeArgs),
    /// Inspect or repair the write-ahead log of a stopped server.
    Wal {
        #[command(subcommand)]
        command: WalCommand,
    },
    /// Import JSON lines (one object per record, key in `id`) into a collection.
    Import {
        #[command(flatten)]
        server: Remote,
        /// Collection to write.
        #[arg(long)]
        collection: String,
        /// The .jsonl file.
        file: PathBuf,
    },
    /// Export a collection as JSON lines (key in `id`) to a file or stdout.
    Export {
        #[command(flatten)]
        server: Remote,
        /// Collection to read.
        #[arg(long)]
        collection: String,
        /// Output file (default: stdout).
        file: Option<PathBuf>,
    },
    /// Run a SQL SELECT on a server and print the rows as a table (or JSON lines).
    Sql {
        #[command(flatten)]
        server: Remote,
        /// Print one JSON object per row instead of a table.
        #[arg(long)]
        json: bool,
        /// The statement, e.g. "SELECT title FROM todos WHERE done = false LIMIT 10".
        statement: String,
    },
    /// Load generator: durable write throughput and catch-up speed of a running server.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// N connections keep K batches of B changes in flight for S seconds.
    Write {
        #[command(flatten)]
        server: Remote,
        /// Concurrent connections (N).
        #[arg(long, default_value_t = 10)]
        connections: usize,
        /// Changes per batch (B).
        #[arg(long, default_value_t = 100)]
        batch: usize,
        /// Batches in flight per connection (K).
        #[arg(long, default_value_t = 4)]
        inflight: usize,
        /// Seconds to run (S).
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Distinct keys written (random picks).
        #[arg(long, default_value_t = 1_000_000)]
        keys: u64,
        /// Collection written.
        #[arg(long, default_value = "bench")]
        collection: String,
        /// Print one JSON object instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Live push latency: one writer, several subscribers, send → receive per change.
    Live {
        #[command(flatten)]
        server: Remote,
        /// Subscribed clients.
        #[arg(long, default_value_t = 10)]
        subscribers: usize,
        /// Changes written (one per batch).
        #[arg(long, default_value_t = 2000)]
        changes: u64,
        /// Milliseconds between changes.
        #[arg(long, default_value_t = 2)]
        interval_ms: u64,
        /// Print one JSON object instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Server memory per idle WebSocket connection (reads the server's /metrics).
    Idle {
        #[command(flatten)]
        server: Remote,
        /// Connections held open.
        #[arg(long, default_value_t = 2000)]
        connections: usize,
        /// Give each connection one (caught-up) subscription.
        #[arg(long)]
        subscribe: bool,
        /// Print one JSON object instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Time an empty client catching up a fresh collection of R records.
    Sync {
        #[command(flatten)]
        server: Remote,
        /// Records (R).
        #[arg(long, default_value_t = 10_000)]
        records: u64,
        /// Print one JSON object instead of a summary.
        #[arg(long)]
        json: bool,
    },
}

/// Which server a client command talks to.
#[derive(clap::Args)]
struct Remote {
    /// Server URL, e.g. http://127.0.0.1:7070.
    #[arg(long, env = "WEFT_URL", default_value = "http://127.0.0.1:7070")]
    url: String,
    /// Bearer token, if the server requires one.
    #[arg(long, env = "WEFT_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Data directory (WAL and SQLite store).
    #[arg(long, env = "WEFT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:7070.
    #[arg(long, env = "WEFT_LISTEN")]
    listen: Option<SocketAddr>,
    /// TOML configuration file (flags and WEFT_* variables override it).
    #[arg(long, env = "WEFT_CONFIG")]
    config: Option<PathBuf>,
    /// Development mode: no authentication, every operation allowed, loopback only.
    // Booleans from the environment read like the config file's: 1/0, true/false, yes/no, on/off.
    #[arg(long, env = "WEFT_DEV", action = clap::ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new())]
    dev: bool,
    /// Allow --dev on a non-loopback address.
    #[arg(long, requires = "dev")]
    dev_allow_remote: bool,
    /// Serve the files of this directory at `/` (e.g. examples/todo/dist).
    #[arg(long, env = "WEFT_STATIC_DIR")]
    static_dir: Option<PathBuf>,
    /// Shared secret for HS256 tokens.
    #[arg(long, env = "WEFT_AUTH_HS256_SECRET", hide_env_values = true)]
    hs256_secret: Option<String>,
    /// JWKS URL for RS256/EdDSA tokens.
    #[arg(long, env = "WEFT_AUTH_JWKS_URL")]
    jwks_url: Option<String>,
    /// Required token issuer.
    #[arg(long, env = "WEFT_AUTH_ISSUER")]
    issuer: Option<String>,
    /// Required token audience.
    #[arg(long, env = "WEFT_AUTH_AUDIENCE")]
    audience: Option<String>,
}

#[derive(Subcommand)]
enum WalCommand {
    /// Check every WAL segment without changing anything.
    Verify {
        /// Data directory of the server.
        #[arg(long, env = "WEFT_DATA_DIR", default_value = "./weft-data")]
        data_dir: PathBuf,
    },
    /// Keep every valid record before the first damage; move the rest to wal/damaged/.
    Repair {
        /// Data directory of the server.
        #[arg(long, env = "WEFT_DATA_DIR", default_value = "./weft-data")]
        data_dir: PathBuf,
    },
}

fn serve_config(args: ServeArgs) -> anyhow::Result<Config> {
    // File, then WEFT_* variables, then flags.
    let mut config = Config::load(args.config.as_deref(), std::env::vars())?;
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if args.static_dir.is_some() {
        config.static_dir = args.static_dir;
    }
    config.dev |= args.dev;
    config.dev_allow_remote |= args.dev_allow_remote;
    if args.hs256_secret.is_some() {
        config.auth.hs256_secret = args.hs256_secret;
    }
    if args.jwks_url.is_some() {
        config.auth.jwks_url = args.jwks_url;
    }
    if args.issuer.is_some() {
        config.auth.issuer = args.issuer;
    }
    if args.audience.is_some() {
        config.auth.audience = args.audience;
    }
    Ok(config)
}

/// Runs the command; a failure is printed as one line naming what went wrong, with its
/// causes (`error: …: …`), never a stack trace — also with `RUST_BACKTRACE` set.
fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("WEFT_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Serve(args) => {
            let config = serve_config(args)?;
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime.block_on(async move {
                let server = weft_server::serve::Server::bind(config.clone()).await?;
                let address = server.local_addr()?;
                eprintln!(
                    "weft {} serving on http://{address}\nconfiguration:\n{}",
                    env!("CARGO_PKG_VERSION"),
                    config.describe()
                );
                server.run(weft_server::serve::shutdown_signal()).await?;
                anyhow::Ok(())
            })?;
        }
        Command::Wal { command: WalCommand::Verify { data_dir } } => {
            print!("{}", weft_server::cli::wal::verify(&data_dir)?);
        }
        Command::Wal { command: WalCommand::Repair { data_dir } } => {
            print!("{}", weft_server::cli::wal::repair(&data_dir)?);
        }
        Command::Import { server, collection, file } => {
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            let client = weft_client::http::HttpClient::new(&server.url, server.token);
            let count = runtime.block_on(weft_server::cli::transfer::import(&client, &collection, &file))?;
            eprintln!("imported {count} records into {collection}");
        }
        Command::Export { server, collection, file } => {
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            let client = weft_client::http::HttpClient::new(&server.url, server.token);
            let count = runtime.block_on(weft_server::cli::transfer::export(&client, &collection, file.as_deref()))?;
            eprintln!("exported {count} records from {collection}");
        }
        Command::Sql { server, json, statement } => {
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            let client = weft_client::http::HttpClient::new(&server.url, server.token);
            let response = runtime.block_on(client.query_sql(&statement))?;
            let rows = response.get("rows").and_then(|r| r.as_array()).cloned().unwrap_or_default();
            if let Some(plan) = response.get("plan").and_then(|p| p.as_str()) {
                println!("plan: {plan}");
            } else if json {
                for row in &rows {
                    println!("{row}");
                }
            } else {
                print!("{}", weft_server::cli::sql::table(&rows));
            }
        }
        Command::Bench { command } => {
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            match command {
                BenchCommand::Write { server, connections, batch, inflight, duration, keys, collection, json } => {
                    let settings = weft_server::cli::bench::WriteBench {
                        url: server.url,
                        token: server.token,
                        connections,
                        batch,
                        inflight,
                        duration: std::time::Duration::from_secs(duration),
                        keys,
                        collection,
                    };
                    let report = runtime.block_on(weft_server::cli::bench::write(settings))?;
                    if json {
                        println!("{}", serde_json::to_string(&report)?);
                    } else {
                        println!(
                            "{:.0} acked changes/s ({:.0} batches/s), batch ack p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {} errors",
                            report.acked_ops_per_sec,
                            report.acked_batches_per_sec,
                            report.p50_ms,
                            report.p99_ms,
                            report.max_ms,
                            report.errors
                        );
                    }
                }
                BenchCommand::Live { server, subscribers, changes, interval_ms, json } => {
                    let interval = std::time::Duration::from_millis(interval_ms.max(1));
                    let report = runtime.block_on(weft_server::cli::bench::live(
                        &server.url,
                        server.token,
                        subscribers,
                        changes,
                        interval,
                    ))?;
                    if json {
                        println!("{}", serde_json::to_string(&report)?);
                    } else {
                        println!(
                            "{} deliveries: send → receive p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                            report.deliveries, report.p50_ms, report.p99_ms, report.max_ms
                        );
                    }
                }
                BenchCommand::Idle { server, connections, subscribe, json } => {
                    let report = runtime.block_on(weft_server::cli::bench::idle(
                        &server.url,
                        server.token,
                        connections,
                        subscribe,
                    ))?;
                    if json {
                        println!("{}", serde_json::to_string(&report)?);
                    } else {
                        println!(
                            "{} idle connections{}: server resident memory {} → {} bytes, {:.0} bytes ({:.1} KiB) per connection",
                            report.connections,
                            if report.subscribed { " with a subscription each" } else { "" },
                            report.server_rss_before,
                            report.server_rss_after,
                            report.bytes_per_connection,
                            report.bytes_per_connection / 1024.0
                        );
                    }
                }
                BenchCommand::Sync { server, records, json } => {
                    let report = runtime.block_on(weft_server::cli::bench::sync(&server.url, server.token, records))?;
                    if json {
                        println!("{}", serde_json::to_string(&report)?);
                    } else {
                        println!(
                            "caught up {} records in {:.3} s ({:.0}/s); {} bytes on the wire for {} encoded ({:.2}x)",
                            report.records,
                            report.seconds,
                            report.records_per_sec,
                            report.wire_bytes,
                            report.encoded_bytes,
                            report.overhead_ratio
                        );
                    }
                }
            }
        }
    }
    Ok(())
}
