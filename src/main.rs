//! The `ringproxy` command line (nginx's flags).
fn main() {}
