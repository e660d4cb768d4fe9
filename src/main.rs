//! The `ringproxy` command line: nginx's flags with nginx's meaning and messages.
//!
//! `-t`/`-T` test (and dump) the configuration, `-s` signals the process named by the pid file,
//! `-v`/`-V`/`-h` inform; otherwise the shards start (`shard::run`) and serve until a signal.

use std::io::Write;
use std::process::ExitCode;

use ringproxy::cli::{self, Options};
use ringproxy::config::{self, LoadOptions, Loaded};

/// mimalloc: size-segregated pages keep the small long-lived allocations of idle tunnels apart
/// from what handshakes allocate and free, so a reconnect storm's memory goes back to the
/// kernel instead of staying pinned between them (glibc malloc: about 20% more per idle
/// WebSocket at 9,000; `scripts/bench.sh`, hold scenario).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Before anything changes the directory: USR2 starts this same path (docs: binary upgrade).
    let exe = ringproxy::shard::Exe::at_start();
    let opts = match cli::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("ringproxy: {e}");
            return ExitCode::FAILURE;
        }
    };
    if opts.help {
        eprint!("{}", cli::usage());
        return ExitCode::SUCCESS;
    }
    if opts.version {
        eprintln!("ringproxy version: ringproxy/{}", env!("CARGO_PKG_VERSION"));
        if opts.version_full {
            eprintln!("built with rustls (TLS), monoio (io_uring with epoll fallback), httparse");
            eprintln!("configure arguments: none (features are fixed at build time)");
        }
        if !opts.test {
            return ExitCode::SUCCESS;
        }
    }
    let conf_file = opts.conf_file();
    let load_opts = LoadOptions {
        file: conf_file.clone(),
        prefix: opts.prefix(),
        params: opts.params.clone(),
    };
    let loaded = config::load(&load_opts);
    if opts.test {
        return test(&opts, &conf_file, loaded);
    }
    let loaded = match loaded {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ringproxy: {e}");
            return ExitCode::FAILURE;
        }
    };
    print_warnings(&loaded);
    if let Some(signal) = opts.signal {
        return match send_signal(&loaded.config.main.pid, signal.number()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(msg) => {
                eprintln!("ringproxy: [error] {msg}");
                ExitCode::FAILURE
            }
        };
    }
    let config = std::sync::Arc::new(loaded.config);
    if let Err(e) = ringproxy::log::init(&config.main.error_logs(opts.error_log.as_deref())) {
        eprintln!("ringproxy: [emerg] {e}");
        return ExitCode::FAILURE;
    }
    // HUP reads the same files, with the same prefix, -g directives and -e error log.
    let error_log = opts.error_log.clone();
    let reload: ringproxy::shard::Reloader = Box::new(move || {
        let loaded = config::load(&load_opts).map_err(|e| match &e.span {
            Some(span) => format!("{} in {span}", e.message),
            None => e.message.clone(),
        })?;
        for w in &loaded.warnings {
            ringproxy::log!(Warn, "{}", w.to_string().trim_start_matches("[warn] "));
        }
        let logs = loaded.config.main.error_logs(error_log.as_deref());
        Ok((loaded.config, logs))
    });
    match ringproxy::shard::run(config, reload, exe) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringproxy: [emerg] {e}");
            ringproxy::log!(Emerg, "{e}");
            ExitCode::FAILURE
        }
    }
}

fn print_warnings(loaded: &Loaded) {
    for w in &loaded.warnings {
        eprintln!("ringproxy: {w}");
    }
}

fn test(
    opts: &Options,
    conf_file: &std::path::Path,
    loaded: Result<Loaded, config::ConfigError>,
) -> ExitCode {
    let name = conf_file.display();
    match loaded {
        Ok(loaded) => {
            print_warnings(&loaded);
            if !opts.quiet {
                eprintln!("ringproxy: the configuration file {name} syntax is ok");
                eprintln!("ringproxy: configuration file {name} test is successful");
            }
            if opts.dump {
                let _ = std::io::stdout()
                    .lock()
                    .write_all(&config::dump::dump(&loaded.ast));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ringproxy: {e}");
            eprintln!("ringproxy: configuration file {name} test failed");
            ExitCode::FAILURE
        }
    }
}

fn send_signal(pid_file: &std::path::Path, sig: i32) -> Result<(), String> {
    let text = std::fs::read_to_string(pid_file).map_err(|e| {
        format!(
            "open() \"{}\" failed ({})",
            pid_file.display(),
            config::os_error(&e)
        )
    })?;
    let trimmed = text.trim_end_matches(['\n', '\r', ' ']);
    let pid: i32 = trimmed.parse().ok().filter(|&p| p > 0).ok_or_else(|| {
        format!(
            "invalid PID number \"{trimmed}\" in \"{}\"",
            pid_file.display()
        )
    })?;
    ringproxy::sys::kill(pid, sig)
        .map_err(|e| format!("kill({pid}, {sig}) failed ({})", config::os_error(&e)))
}
