//! The `storebox` command: thin by design — parse the command line, set up logging and signals,
//! load the config, hand over to the library.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// The customer-management and device hub of a store.
#[derive(Parser)]
#[command(name = "storebox", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon.
    Run {
        /// Config file (TOML).
        #[arg(long, short, env = "STOREBOX_CONFIG")]
        config: PathBuf,
        /// Log lines as text or as JSON objects (one per line), on standard output (journald
        /// under systemd). The level comes from RUST_LOG (default info).
        #[arg(long, env = "STOREBOX_LOG_FORMAT", value_enum, default_value = "text")]
        log_format: LogFormat,
    },
    /// Print a production config to start from. A new terminal token and a first admin PIN
    /// go to standard error (shown once), only their hashes into the config.
    GenerateConfig {
        /// Store id (`[a-z0-9_-]`, used in MQTT topics).
        #[arg(long, default_value = "sh-001")]
        store_id: String,
        /// Store name printed on receipts.
        #[arg(long, default_value = "门店")]
        name: String,
    },
    /// Check a config file and the files it names: exit 0 if valid (warning on standard error
    /// about secrets every user on the box can read), else print the file, key and reason and
    /// exit 2.
    CheckConfig {
        /// Config file (TOML).
        file: PathBuf,
    },
    /// Create the store key if it does not exist (mode 0600) and print its fingerprint; in
    /// production, mark a data directory with no journal as a new store's (the daemon begins
    /// a journal only there).
    Init {
        /// Config file (TOML).
        #[arg(long, short, env = "STOREBOX_CONFIG")]
        config: PathBuf,
    },
    /// Read a PIN on standard input and print its argon2id hash for `pin_hash`, peppered with
    /// the store key of `--config` (without it: unpeppered, as HQ makes them).
    HashPin {
        /// Config file (TOML) whose store key peppers the hash.
        #[arg(long, short, env = "STOREBOX_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Members in bulk.
    Members {
        #[command(subcommand)]
        command: MembersCmd,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCmd,
    },
    /// Write a consistent, encrypted backup of the store's data (the daemon may be running).
    Backup {
        /// Config file (TOML).
        #[arg(long, short, env = "STOREBOX_CONFIG")]
        config: PathBuf,
        /// The backup file to write.
        file: PathBuf,
    },
    /// Restore a backup into the config's empty data directory (the daemon must be stopped).
    Restore {
        /// Config file (TOML).
        #[arg(long, short, env = "STOREBOX_CONFIG")]
        config: PathBuf,
        /// The backup file.
        file: PathBuf,
        /// The last seq HQ received from this store (HQ's console shows it); the restored
        /// store numbers its events after it, so no seq is ever used twice. 0 if HQ never
        /// received anything. Refused below the seq the backup shows the broker acknowledged,
        /// but with --hq-lost-events.
        #[arg(long)]
        hq_last_seq: u64,
        /// HQ lacks events the broker had acknowledged (a broker that lost its queue): take an
        /// --hq-last-seq below the backup's acknowledged position; they are sent again.
        #[arg(long)]
        hq_lost_events: bool,
    },
    /// Read a terminal token on standard input and print its SHA-256 for `token_sha256`.
    HashToken,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum MembersCmd {
    /// Import members from a CSV file (the daemon must be stopped). Exit 0 when every row was
    /// taken, 1 when some were refused (each is listed with its line and reason), 2 on failure.
    Import {
        /// Config file (TOML).
        #[arg(long, short, env = "STOREBOX_CONFIG")]
        config: PathBuf,
        /// The CSV file: a header line, then one member per line.
        file: PathBuf,
        /// The file's encoding.
        #[arg(long, value_enum, default_value = "auto")]
        encoding: CsvEncoding,
        /// A column for a field, when its header is not recognised: `--map phone=联系方式`.
        #[arg(long, value_parser = parse_map)]
        map: Vec<(String, String)>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum CsvEncoding {
    Auto,
    // `utf-8` as the README writes it; `utf8` is taken too.
    #[value(name = "utf-8", alias = "utf8")]
    Utf8,
    Gbk,
}

fn parse_map(s: &str) -> Result<(String, String), String> {
    let (f, h) = s
        .split_once('=')
        .ok_or_else(|| "give field=header".to_string())?;
    const FIELDS: [&str; 7] = [
        "name", "phone", "birthday", "gender", "card_no", "tags", "consent",
    ];
    if !FIELDS.contains(&f) {
        return Err(format!("{f} is not one of {}", FIELDS.join(", ")));
    }
    Ok((f.to_string(), h.to_string()))
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Check the audit chain; exit 0 if intact, else name the first broken entry and exit 1.
    Verify {
        /// Config file (TOML).
        #[arg(long, short, env = "STOREBOX_CONFIG")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::CheckConfig { file } => {
            match storebox::config::Config::load(&file).and_then(|c| c.check_files().map(|()| c)) {
                Ok(c) => {
                    println!("{}: OK", file.display());
                    // Not refused: a store runs on such a config, but say so plainly.
                    for w in c
                        .exposed_secrets()
                        .iter()
                        .chain(&c.likely_mistakes())
                        .chain(&c.outside_the_unit())
                    {
                        eprintln!("warning: {w}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(2)
                }
            }
        }
        Cmd::Members {
            command:
                MembersCmd::Import {
                    config,
                    file,
                    encoding,
                    map,
                },
        } => import(&config, &file, encoding, &map),
        Cmd::Init { config } => offline(&config, |c| storebox::admin::init(&c)),
        Cmd::Audit {
            command: AuditCmd::Verify { config },
        } => offline(&config, |c| storebox::admin::audit_verify(&c)),
        Cmd::Backup { config, file } => offline(&config, |c| storebox::admin::backup(&c, &file)),
        Cmd::Restore {
            config,
            file,
            hq_last_seq,
            hq_lost_events,
        } => offline(&config, |c| {
            storebox::admin::restore(&c, &file, hq_last_seq, hq_lost_events)
        }),
        Cmd::HashPin { config } => match read_secret() {
            Some(pin) if storebox::config::valid_pin(&pin) => {
                let hashed = match config {
                    None => storebox::config::hash_pin(&pin),
                    Some(path) => storebox::config::Config::load(&path)
                        .map_err(|e| e.to_string())
                        .and_then(|c| {
                            storebox::security::StoreKeys::load(&c.key_path())
                                .map_err(|e| e.to_string())
                        })
                        .and_then(|k| storebox::security::pin::hash(&k, &pin)),
                };
                match hashed {
                    Ok(h) => {
                        println!("{h}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("hashing failed: {e}");
                        ExitCode::FAILURE
                    }
                }
            }
            _ => {
                eprintln!("a PIN is 4–8 digits, given on standard input");
                ExitCode::from(2)
            }
        },
        Cmd::HashToken => match read_secret() {
            Some(t) if t.len() >= 16 => {
                println!("{}", hex::encode(storebox::config::token_hash(&t)));
                ExitCode::SUCCESS
            }
            _ => {
                eprintln!("a terminal token is at least 16 characters, given on standard input");
                ExitCode::from(2)
            }
        },
        Cmd::Run { config, log_format } => run(config, log_format),
        Cmd::GenerateConfig { store_id, name } => {
            if !storebox::config::valid_id(&store_id) {
                eprintln!("a store id is 1–32 of a-z, 0-9, '-' and '_'");
                return ExitCode::from(2);
            }
            // check-config refuses an empty store.name: do not print a config that fails it.
            if name.trim().is_empty() {
                eprintln!("a store name must not be empty");
                return ExitCode::from(2);
            }
            let (text, token, pin) = storebox::config::generate(&store_id, &name);
            print!("{text}");
            // The secrets go to the terminal, not into the file.
            eprintln!("terminal pos-1 token (configure it on the terminal): {token}");
            eprintln!("admin 9001 first PIN (change it after the first login): {pin}");
            ExitCode::SUCCESS
        }
    }
}

/// Runs an offline command on a loaded config: its report on stdout, errors on stderr; the
/// command's own exit code (1 for a failed check), 2 for a bad config or failure.
fn offline(
    path: &std::path::Path,
    f: impl FnOnce(storebox::config::Config) -> anyhow::Result<(String, bool)>,
) -> ExitCode {
    let config = match storebox::config::Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match f(config) {
        Ok((report, true)) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Ok((report, false)) => {
            eprintln!("{report}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("storebox: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn import(
    config: &std::path::Path,
    file: &std::path::Path,
    encoding: CsvEncoding,
    map: &[(String, String)],
) -> ExitCode {
    use storebox::import::Encoding;
    let config = match storebox::config::Config::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let encoding = match encoding {
        CsvEncoding::Auto => Encoding::Auto,
        CsvEncoding::Utf8 => Encoding::Utf8,
        CsvEncoding::Gbk => Encoding::Gbk,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let started = std::time::Instant::now();
    let mut last_shown = std::time::Instant::now();
    // SIGTERM or Ctrl-C stops the import after the chunk under way, and the store is closed
    // (a second signal exits at once, as a kill does).
    let stop = CancellationToken::new();
    let result = runtime.block_on(async {
        tokio::spawn(shutdown_on_signal(stop.clone()));
        storebox::import::import_until(
            &config,
            file,
            encoding,
            map,
            storebox::import::CHUNK,
            &stop,
            |p: storebox::import::Progress| {
                if p.finished() || last_shown.elapsed().as_millis() >= 500 {
                    last_shown = std::time::Instant::now();
                    let (rows, pct) = (p.rows, p.percent());
                    if tty {
                        eprint!("\rimporting: {rows} rows read ({pct} % of the file)");
                        if p.finished() {
                            eprintln!();
                        }
                    } else {
                        eprintln!("importing: {rows} rows read ({pct} % of the file)");
                    }
                }
            },
        )
        .await
    });
    match result {
        Ok(s) => {
            let r = &s.report;
            println!(
                "{}: {} rows ({}) in {:.1} s: {} added, {} merged into known members, {} unchanged, {} refused",
                file.display(),
                s.rows,
                s.encoding,
                started.elapsed().as_secs_f64(),
                r.added,
                r.merged,
                r.unchanged,
                r.rejected.len()
            );
            for (line, reason) in &r.rejected {
                println!("line {line}: {reason}");
            }
            if r.rejected.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("storebox: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn read_secret() -> Option<String> {
    let mut s = String::new();
    std::io::stdin().take(1024).read_to_string(&mut s).ok()?;
    let s = s.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn run(path: PathBuf, format: LogFormat) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .init(),
        LogFormat::Json => builder.json().with_current_span(false).init(),
    }
    let config = match storebox::config::Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            // In the log too, with the version: after an upgrade, which storebox refused it.
            tracing::error!(version = %env!("CARGO_PKG_VERSION"), "{e}");
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    raise_descriptor_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        tokio::spawn(shutdown_on_signal(shutdown.clone()));
        match storebox::app::run(config, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e:#}");
                eprintln!("storebox: {e:#}");
                ExitCode::FAILURE
            }
        }
    });
    // Once `run` returned, the ledger has stopped and every task that writes has ended; what
    // may still run on the blocking pool is a read whose request is gone (a manager's
    // year-long report, which is not interrupted mid-query). Dropping the runtime would wait
    // for it — a stop logged as clean, and the process still there until systemd killed it.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}

/// Raises the soft limit on open descriptors to the hard one (at most 8,192): the server's
/// connection caps (src/app/serve.rs) and TLS handshakes need more than the usual soft 1,024
/// beside the journal, the cache, the devices and the broker. Outside systemd's `LimitNOFILE=`
/// this is what keeps a flood of connections from failing the daemon's own file opens.
fn raise_descriptor_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a pointer to a live local.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    let want = lim.rlim_max.min(8192);
    if lim.rlim_cur < want {
        lim.rlim_cur = want;
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            tracing::warn!(
                limit = lim.rlim_cur,
                "cannot raise the open-file limit; a flood of connections may use it up"
            );
        }
    }
}

/// Cancels `token` on SIGTERM (systemd stop) or SIGINT (Ctrl-C); a second one exits at once
/// (what was acknowledged is in the journal already, as after `kill -9`).
async fn shutdown_on_signal(token: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        _ => {
            tracing::error!("cannot install signal handlers; stop with SIGKILL only");
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    token.cancel();
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::warn!("a second signal: exiting without waiting for the shutdown");
    std::process::exit(130);
}
