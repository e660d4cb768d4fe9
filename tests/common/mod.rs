//! Helpers shared by the integration tests: the built binary, temp copies of configurations,
//! and running the binary with a deadline.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `ringproxy` binary cargo built for these tests.
pub fn ringproxy() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ringproxy"))
}

/// `../shared/seed-configs` beside the repository (CI clones main with shared/ beside it).
pub fn seed_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/seed-configs");
    assert!(
        dir.is_dir(),
        "seed configurations not found at {}: shared/ must sit beside the repository",
        dir.display()
    );
    dir
}

/// Copies a directory tree into a new temp dir and returns it.
pub fn copy_tree(from: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_into(from, dir.path());
    dir
}

fn copy_into(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
            copy_into(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Runs the binary with `args`, killing it if it has not finished within 20 s.
pub fn run(args: &[&str]) -> Output {
    let mut child = Command::new(ringproxy())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringproxy");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ringproxy {args:?} did not finish within 20 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
