//! Replays routing decisions recorded from a real nginx against `ringproxy::route`.
//!
//! `tests/data/nginx_routes.txt` was produced by `scripts/gen-nginx-route-table.sh` with nginx
//! 1.22.1 (Debian 12, x86_64) running `tests/data/nginx_routes.conf`, where every location
//! answers `return 200 "<id> [variables]"`. Each line is one request (local address, Host, raw
//! target) and what nginx answered. Here the same configuration is built by ringproxy's parser
//! and builder, and for every line the request goes through the [`Router`] as the engine will
//! drive it: the address's default server's `merge_slashes` normalises the path (400 on
//! error), Host selects the server, location matching picks a location, whose rewrite script is
//! run by a small evaluator here (`rewrite ... last` re-runs matching, counted by
//! [`UriChanges`]: the 11th change is nginx's 500), until a `return` gives the answer. A 301 is
//! nginx's auto-redirect to a `proxy_pass` location; "no location" is nginx's static handler
//! (403/404 here).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ringproxy::config::build::{build, BuildOptions};
use ringproxy::config::model::{HttpConf, ScriptOp};
use ringproxy::config::parser::parse_str;
use ringproxy::config::template::{Part, Template};
use ringproxy::route::{self, Captures, Found, Router, UriChanges};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn load() -> HttpConf {
    let path = data("nginx_routes.conf");
    let text = std::fs::read_to_string(&path).expect("nginx_routes.conf");
    let dir = path.parent().unwrap();
    let ast = parse_str(path.to_str().unwrap(), &text, dir).expect("parse");
    let opts = BuildOptions {
        prefix: std::env::temp_dir(),
        conf_dir: dir.to_path_buf(),
        is_root: false,
    };
    build(&ast, &opts).expect("build").0.http.expect("http")
}

/// The captures in force and the strings they index (nginx keeps one set per request: the
/// latest regex that matched).
struct Vars<'r> {
    uri: String,
    host: String,
    server_caps: Option<Captures<'r>>,
    caps: Option<(Captures<'r>, String)>,
}

impl Vars<'_> {
    fn eval(&self, t: &Template) -> String {
        let mut out = String::new();
        for part in &t.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Capture(n) => {
                    let v = match (&self.caps, &self.server_caps) {
                        (Some((c, s)), _) => c.get(s, *n as usize),
                        (None, Some(c)) => c.get(&self.host, *n as usize),
                        (None, None) => None,
                    };
                    out.push_str(&String::from_utf8_lossy(v.unwrap_or(b"")));
                }
                Part::Var(name) if name == "uri" => out.push_str(&self.uri),
                Part::Var(name) => {
                    let v = self
                        .caps
                        .as_ref()
                        .and_then(|(c, s)| c.name(s, name))
                        .or_else(|| self.server_caps.as_ref()?.name(&self.host, name));
                    out.push_str(&String::from_utf8_lossy(
                        v.expect("only capture variables are used"),
                    ));
                }
            }
        }
        out
    }
}

/// What ringproxy's routing answers: (status, answer) in the table's terms.
fn route(
    conf: &HttpConf,
    router: &Router,
    local: SocketAddr,
    host: Option<&str>,
    target: &str,
) -> (u16, String) {
    let (path, args) = match target.split_once('?') {
        Some((p, a)) => (p, Some(a)),
        None => (target, None),
    };
    let default = router.default_server(local).expect("listened on");
    let merge = conf.servers[default].conf.merge_slashes();
    let Ok(uri) = route::uri::normalize(path, merge) else {
        return (400, "-".into());
    };
    let server = router.server_for(local, host).expect("listened on");
    let mut vars = Vars {
        uri: uri.into_owned(),
        host: host
            .map(|h| route::host_name(h).into_owned())
            .unwrap_or_default(),
        server_caps: server.captures,
        caps: None,
    };
    let mut changes = UriChanges::new();
    let mut found = router.find_location(server.server, &vars.uri);
    loop {
        let id = match found {
            Found::Redirect(id) => {
                let name = router.location_name(id);
                return (
                    301,
                    args.map_or(name.to_string(), |a| format!("{name}?{a}")),
                );
            }
            Found::ServerLevel => return (404, "-".into()),
            Found::Location(id, caps) => {
                vars.caps = caps.map(|c| (c, vars.uri.clone()));
                id
            }
        };
        let loc = router.location(conf, id).expect("location of this config");
        let mut next = None;
        for op in &loc.conf.script {
            match op {
                ScriptOp::Return { code, text } => {
                    return (
                        *code,
                        text.as_ref().map(|t| vars.eval(t)).unwrap_or_default(),
                    );
                }
                ScriptOp::Rewrite {
                    regex, replacement, ..
                } => {
                    let subject = vars.uri.clone();
                    let Some(m) = regex.exec(subject.as_bytes()) else {
                        continue;
                    };
                    let mut t = String::new();
                    for part in &replacement.parts {
                        match part {
                            Part::Literal(s) => t.push_str(s),
                            Part::Capture(n) => {
                                t.push_str(m.get(*n as usize).map_or("", |(s, e)| &subject[s..e]))
                            }
                            Part::Var(_) => panic!("no variables in rewrites here"),
                        }
                    }
                    next = Some(t);
                    break;
                }
                other => panic!("unexpected script op {other:?}"),
            }
        }
        let Some(new_uri) = next else {
            return (404, "-".into());
        };
        vars.uri = new_uri;
        match router.refind_location(server.server, &vars.uri, &mut changes) {
            Ok(f) => found = f,
            Err(_) => return (500, "-".into()),
        }
    }
}

#[test]
fn every_recorded_nginx_answer() {
    let conf = load();
    let router = Router::new(&conf);
    let table = std::fs::read_to_string(data("nginx_routes.txt")).expect("nginx_routes.txt");
    let mut checked = 0;
    let mut failures = Vec::new();
    for line in table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (request, expected) = line.split_once(" => ").expect("=> separator");
        let mut words = request.split(' ');
        let local: SocketAddr = words.next().unwrap().parse().expect("address");
        let host = Some(words.next().unwrap()).filter(|h| *h != "-");
        let target = words.next().unwrap();
        let (code, answer) = expected.split_once(' ').expect("status and answer");
        let code: u16 = code.parse().expect("status");
        let got = route(&conf, &router, local, host, target);
        // nginx's static handler answers 403 (directory) or 404 where no location matched.
        let ok = if code == 403 || code == 404 {
            got.0 == 404
        } else {
            got == (code, answer.to_string())
        };
        if !ok {
            failures.push(format!(
                "{request}: nginx {code} {answer}, ringproxy {} {}",
                got.0, got.1
            ));
        }
        checked += 1;
    }
    assert!(checked >= 100, "only {checked} recorded requests");
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
