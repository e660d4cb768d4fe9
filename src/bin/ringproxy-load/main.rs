//! `ringproxy-load`: the load tool. This stub only dispatches `report`; the echo backend and the
//! clients land with the load tool itself.
mod report;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("report") => report::run(&args[1..]),
        _ => anyhow::bail!("usage: ringproxy-load report --input FILE --out-dir DIR"),
    }
}
