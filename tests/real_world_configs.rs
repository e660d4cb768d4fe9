//! The corpus of real-world-style configurations (`tests/data/real-world`, see its README): each
//! site is run under the corpus's Debian-style `nginx.conf` with its placeholders substituted.
//! Every site passes `ringproxy -t` or is in `KNOWN_REFUSALS` with every line refused (found by
//! commenting out each refused line in a scratch copy and testing again), so the test fails
//! both when a refusal goes away and when a new one appears. Every accepted site is started
//! with the echo backend and must answer a WebSocket upgrade and echo, and plain GETs, the way
//! nginx answers them on that configuration.

mod common;

use std::path::{Path, PathBuf};

use common::{certs, tls, Echo, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// Sites nginx 1.22 accepts and ringproxy refuses: each `[emerg]` message (without its
/// `in FILE:LINE`), in the order `-t` reports them once the ones before are commented out.
const KNOWN_REFUSALS: &[(&str, &[&str])] = &[
    (
        "jitsi-meet.conf",
        &[
            "\"ssi\" directive is not supported by ringproxy",
            "\"ssi_types\" directive is not supported by ringproxy",
        ],
    ),
    (
        "mastodon.conf",
        &[
            "\"proxy_cache_path\" directive is not supported by ringproxy: ringproxy has no cache",
            "\"proxy_cache\" directive is not supported by ringproxy: ringproxy has no cache",
            "\"proxy_cache_valid\" directive is not supported by ringproxy: ringproxy has no cache",
            "\"proxy_cache_valid\" directive is not supported by ringproxy: ringproxy has no cache",
            "\"proxy_cache_use_stale\" directive is not supported by ringproxy: ringproxy has no cache",
            "variable \"$upstream_cache_status\" is not supported by ringproxy",
        ],
    ),
    (
        "mattermost.conf",
        &[
            "\"proxy_cache_path\" directive is not supported by ringproxy: ringproxy has no cache",
            "\"proxy_cache\" directive is not supported by ringproxy: ringproxy has no cache",
            "\"proxy_cache_revalidate\" directive is not supported by ringproxy: ringproxy has no cache",
            "\"proxy_cache_min_uses\" directive is not supported by ringproxy: ringproxy has no cache",
            "\"proxy_cache_use_stale\" directive is not supported by ringproxy: ringproxy has no cache",
            "\"proxy_cache_lock\" directive is not supported by ringproxy: ringproxy has no cache",
        ],
    ),
];

const STOPPED_NO_LINE: &str = "(search stopped: the error names no line)";
const STOPPED_BLOCK: &str = "(search stopped: the refused line opens a block)";

/// How nginx answers a plain GET on a site.
#[derive(Clone, Copy)]
enum Want {
    /// 200 with the echo backend's body.
    Proxied,
    /// 200 with this file of the static root (`@ROOT@`).
    Static(&'static str),
    /// This status with this `Location`.
    Redirect(u16, &'static str),
    /// Asked without credentials: 401 with this realm's challenge.
    Challenge(&'static str),
    /// No response: the connection is closed (`return 444`).
    Closed,
}

/// Sites behind `auth_basic`: the `Authorization` value their WebSockets and proxied GETs send
/// (a user of the corpus's `htpasswd.users`).
const CREDENTIALS: &[(&str, &str)] = &[("kibana.conf", "Basic a2liYW5hYWRtaW46a2liYW5hLXB3")];

fn credentials(site: &str) -> Option<&'static str> {
    CREDENTIALS
        .iter()
        .find(|(f, _)| *f == site)
        .map(|(_, c)| *c)
}

/// A request on one of a site's two ports: TLS (`@PORT_HTTPS@`) or not, Host (and SNI), path.
type Target = (bool, &'static str, &'static str);

struct Site {
    file: &'static str,
    websockets: &'static [Target],
    gets: &'static [(Target, Want)],
}

const HTTP: bool = false;
const HTTPS: bool = true;

const SITES: &[Site] = &[
    Site {
        file: "swag-homeassistant.conf",
        websockets: &[(HTTPS, "homeassistant.example.com", "/api/websocket")],
        gets: &[
            (
                (HTTPS, "homeassistant.example.com", "/lovelace"),
                Want::Proxied,
            ),
            (
                (HTTPS, "homeassistant.example.com", "/api/states"),
                Want::Proxied,
            ),
        ],
    },
    Site {
        file: "discourse.conf",
        // No Upgrade headers are set: nginx passes no WebSocket here (Discourse long-polls).
        websockets: &[],
        gets: &[
            ((HTTPS, "forum.example.com", "/latest"), Want::Proxied),
            (
                (HTTP, "forum.example.com", "/latest"),
                Want::Redirect(301, "https://forum.example.com/latest"),
            ),
        ],
    },
    Site {
        file: "code-server.conf",
        websockets: &[(HTTP, "code.example.com", "/stable-abc?reconnectionToken=1")],
        gets: &[((HTTP, "code.example.com", "/"), Want::Proxied)],
    },
    Site {
        file: "forgejo-subpath.conf",
        websockets: &[(HTTP, "www.example.com", "/forgejo/-/ws")],
        gets: &[(
            (HTTP, "www.example.com", "/forgejo/user/repo?tab=x"),
            Want::Proxied,
        )],
    },
    Site {
        file: "gitea.conf",
        websockets: &[(HTTP, "git.example.com", "/-/ws")],
        gets: &[((HTTP, "git.example.com", "/explore/repos"), Want::Proxied)],
    },
    Site {
        file: "grafana.conf",
        websockets: &[(HTTP, "grafana.example.com", "/api/live/ws")],
        gets: &[((HTTP, "grafana.example.com", "/d/abc"), Want::Proxied)],
    },
    Site {
        file: "grafana-subpath.conf",
        websockets: &[(HTTP, "www.example.com", "/grafana/api/live/ws")],
        gets: &[
            ((HTTP, "www.example.com", "/grafana/login"), Want::Proxied),
            ((HTTP, "www.example.com", "/"), Want::Static("index.html")),
        ],
    },
    Site {
        file: "guacamole.conf",
        websockets: &[(
            HTTP,
            "remote.example.com",
            "/guacamole/websocket-tunnel?token=T",
        )],
        gets: &[((HTTP, "remote.example.com", "/guacamole/"), Want::Proxied)],
    },
    Site {
        file: "jupyter-notebook.conf",
        websockets: &[(
            HTTP,
            "notebook.example.com",
            "/jupyter/api/kernels/4f2a/channels?session_id=9",
        )],
        gets: &[(
            (HTTP, "notebook.example.com", "/jupyter/tree"),
            Want::Proxied,
        )],
    },
    Site {
        file: "novnc.conf",
        websockets: &[(HTTP, "vnc.example.com", "/websockify")],
        gets: &[((HTTP, "vnc.example.com", "/vnc/"), Want::Static("vnc.html"))],
    },
    Site {
        file: "kibana.conf",
        websockets: &[(HTTP, "kibana.example.com", "/api/ws?x=1")],
        gets: &[
            ((HTTP, "kibana.example.com", "/app/home"), Want::Proxied),
            (
                (HTTP, "kibana.example.com", "/app/home"),
                Want::Challenge("Restricted Access"),
            ),
        ],
    },
    Site {
        file: "portainer.conf",
        websockets: &[(
            HTTP,
            "docker.example.com",
            "/portainer/api/websocket/exec?id=7",
        )],
        gets: &[((HTTP, "docker.example.com", "/portainer/"), Want::Proxied)],
    },
    Site {
        file: "socketio-cloudflare.conf",
        websockets: &[(
            HTTP,
            "io.example.com",
            "/socket.io/?EIO=4&transport=websocket",
        )],
        gets: &[((HTTP, "io.example.com", "/"), Want::Proxied)],
    },
    Site {
        file: "socketio-cluster.conf",
        websockets: &[(HTTP, "localhost", "/socket.io/?EIO=4&transport=websocket")],
        gets: &[((HTTP, "localhost", "/"), Want::Proxied)],
    },
    Site {
        file: "hedgedoc.conf",
        websockets: &[(
            HTTPS,
            "hedgedoc.example.com",
            "/socket.io/?noteId=n1&EIO=3&transport=websocket",
        )],
        gets: &[((HTTPS, "hedgedoc.example.com", "/n1"), Want::Proxied)],
    },
    Site {
        file: "home-assistant.conf",
        websockets: &[(HTTPS, "homeassistant.example.com", "/api/websocket")],
        gets: &[
            (
                (HTTPS, "homeassistant.example.com", "/lovelace"),
                Want::Proxied,
            ),
            (
                (HTTP, "homeassistant.example.com", "/lovelace"),
                Want::Redirect(301, "https://homeassistant.example.com/lovelace"),
            ),
        ],
    },
    Site {
        file: "nextcloud-aio.conf",
        websockets: &[(HTTPS, "cloud.example.com", "/apps/notify_push/ws")],
        gets: &[
            ((HTTPS, "cloud.example.com", "/status.php"), Want::Proxied),
            (
                (HTTP, "cloud.example.com", "/login?x=1"),
                Want::Redirect(301, "https://cloud.example.com/login?x=1"),
            ),
        ],
    },
    Site {
        file: "nextcloud-talk-signaling.conf",
        websockets: &[(HTTPS, "cloud.example.com", "/standalone-signaling/spreed")],
        gets: &[
            (
                (
                    HTTPS,
                    "cloud.example.com",
                    "/standalone-signaling/api/v1/welcome",
                ),
                Want::Proxied,
            ),
            (
                (HTTPS, "cloud.example.com", "/"),
                Want::Static("index.html"),
            ),
        ],
    },
    Site {
        file: "node-red.conf",
        websockets: &[(HTTPS, "nodered.example.com", "/comms")],
        gets: &[
            ((HTTPS, "nodered.example.com", "/"), Want::Proxied),
            (
                (HTTP, "nodered.example.com", "/flows"),
                Want::Redirect(301, "https://nodered.example.com/flows"),
            ),
        ],
    },
    Site {
        file: "rocketchat.conf",
        websockets: &[(HTTPS, "chat.example.com", "/websocket")],
        gets: &[
            ((HTTPS, "chat.example.com", "/home"), Want::Proxied),
            (
                (HTTP, "chat.example.com", "/home"),
                Want::Redirect(301, "https://chat.example.com/home"),
            ),
        ],
    },
    Site {
        file: "jupyterhub.conf",
        websockets: &[(HTTPS, "hub.example.com", "/user/a/api/kernels/k/channels")],
        gets: &[
            ((HTTPS, "hub.example.com", "/hub/home"), Want::Proxied),
            (
                (HTTP, "hub.example.com", "/hub/home"),
                Want::Redirect(302, "https://hub.example.com/hub/home"),
            ),
        ],
    },
    Site {
        file: "node-app.conf",
        websockets: &[(HTTPS, "app.example.com", "/socket")],
        gets: &[
            ((HTTPS, "app.example.com", "/"), Want::Proxied),
            (
                (HTTP, "app.example.com", "/x"),
                Want::Redirect(301, "https://app.example.com/x"),
            ),
        ],
    },
    Site {
        file: "vaultwarden.conf",
        websockets: &[(HTTPS, "vaultwarden.example.tld", "/notifications/hub")],
        gets: &[
            (
                (HTTPS, "vaultwarden.example.tld", "/api/config"),
                Want::Proxied,
            ),
            (
                (HTTP, "vaultwarden.example.tld", "/admin"),
                Want::Redirect(301, "https://vaultwarden.example.tld/admin"),
            ),
        ],
    },
    Site {
        file: "zammad-strong-tls.conf",
        websockets: &[(HTTPS, "helpdesk.example.com", "/ws")],
        gets: &[
            (
                (HTTPS, "helpdesk.example.com", "/api/v1/tickets"),
                Want::Proxied,
            ),
            (
                (HTTPS, "helpdesk.example.com", "/favicon.ico"),
                Want::Static("favicon.ico"),
            ),
        ],
    },
    Site {
        file: "uptime-kuma.conf",
        websockets: &[(
            HTTPS,
            "status.example.com",
            "/socket.io/?EIO=4&transport=websocket",
        )],
        gets: &[((HTTPS, "status.example.com", "/dashboard"), Want::Proxied)],
    },
    Site {
        file: "zulip.conf",
        websockets: &[(HTTPS, "zulip.example.com", "/json/events")],
        gets: &[
            ((HTTPS, "zulip.example.com", "/"), Want::Proxied),
            (
                (HTTP, "zulip.example.com", "/login/"),
                Want::Redirect(301, "https://zulip.example.com/login/"),
            ),
        ],
    },
    Site {
        file: "aspnetcore-signalr.conf",
        websockets: &[(HTTPS, "app.example.com", "/hubs/chat?id=Qm9")],
        gets: &[
            ((HTTPS, "app.example.com", "/"), Want::Proxied),
            ((HTTPS, "eu.app.example.com", "/privacy"), Want::Proxied),
            (
                (HTTP, "app.example.com", "/privacy"),
                Want::Redirect(301, "https://app.example.com/privacy"),
            ),
        ],
    },
    Site {
        file: "cockpit.conf",
        websockets: &[(HTTPS, "cockpit.example.com", "/cockpit/socket")],
        gets: &[
            ((HTTPS, "cockpit.example.com", "/system"), Want::Proxied),
            (
                (HTTP, "cockpit.example.com", "/system"),
                Want::Redirect(301, "https://cockpit.example.com/system"),
            ),
            ((HTTP, "other.example.com", "/"), Want::Closed),
        ],
    },
    Site {
        file: "etherpad.conf",
        websockets: &[
            (
                HTTPS,
                "etherpad.example.org",
                "/socket.io/?padId=p1&EIO=4&transport=websocket",
            ),
            (
                HTTPS,
                "etherpad.example.org",
                "/etherpad/socket.io/?padId=p1&EIO=4&transport=websocket",
            ),
        ],
        gets: &[
            ((HTTPS, "etherpad.example.org", "/p/p1"), Want::Proxied),
            (
                (HTTPS, "etherpad.example.org", "/etherpad/p/p1"),
                Want::Proxied,
            ),
            (
                (HTTP, "etherpad.example.org", "/p/p1"),
                Want::Redirect(301, "https://etherpad.example.org/p/p1"),
            ),
        ],
    },
    Site {
        file: "netdata.conf",
        websockets: &[(HTTP, "netdata.example.com", "/netdata/api/v2/ws")],
        gets: &[(
            (HTTP, "netdata.example.com", "/netdata/api/v1/info?x=1"),
            Want::Proxied,
        )],
    },
    Site {
        file: "ntfy.conf",
        websockets: &[
            (HTTP, "ntfy.sh", "/mytopic/ws"),
            (HTTPS, "ntfy.sh", "/mytopic/ws"),
        ],
        gets: &[
            (
                (HTTP, "ntfy.sh", "/mytopic"),
                Want::Redirect(302, "https://ntfy.sh/mytopic"),
            ),
            ((HTTP, "ntfy.sh", "/mytopic/json?poll=1"), Want::Proxied),
            ((HTTPS, "ntfy.sh", "/mytopic"), Want::Proxied),
        ],
    },
    Site {
        file: "octoprint.conf",
        websockets: &[(HTTP, "octopi.local", "/octoprint/sockjs/websocket")],
        gets: &[
            ((HTTP, "octopi.local", "/octoprint/"), Want::Proxied),
            (
                (HTTP, "octopi.local", "/webcam/?action=stream"),
                Want::Proxied,
            ),
        ],
    },
    Site {
        file: "odoo.conf",
        websockets: &[(HTTPS, "odoo.mycompany.com", "/websocket")],
        gets: &[
            ((HTTPS, "odoo.mycompany.com", "/web/login"), Want::Proxied),
            (
                (HTTPS, "odoo.mycompany.com", "/web/static/lib/app.js"),
                Want::Proxied,
            ),
            (
                (HTTP, "odoo.mycompany.com", "/web"),
                Want::Redirect(301, "https://odoo.mycompany.com/web"),
            ),
        ],
    },
    Site {
        file: "onlyoffice.conf",
        websockets: &[(
            HTTP,
            "docs.example.com",
            "/7.5.1/doc/k1/c/?EIO=4&transport=websocket",
        )],
        gets: &[
            ((HTTP, "docs.example.com", "/healthcheck"), Want::Proxied),
            (
                (HTTP, "docs.example.com", "/ds-vpath/healthcheck"),
                Want::Proxied,
            ),
        ],
    },
    Site {
        file: "proxmox-ve.conf",
        websockets: &[(
            HTTPS,
            "pve.example.com",
            "/api2/json/nodes/pve/qemu/100/vncwebsocket?port=5900",
        )],
        gets: &[
            ((HTTPS, "pve.example.com", "/"), Want::Proxied),
            (
                (HTTP, "pve.example.com", "/pve2/ext6/x?ver=8"),
                Want::Redirect(301, "https://pve.example.com/pve2/ext6/x?ver=8"),
            ),
        ],
    },
    Site {
        file: "rstudio-subpath.conf",
        websockets: &[
            (HTTP, "analytics.example.com", "/rstudio/p/4f2a/websocket/"),
            (HTTP, "analytics.example.com", "/shiny/app/websocket/"),
        ],
        gets: &[
            ((HTTP, "analytics.example.com", "/rstudio/"), Want::Proxied),
            (
                (HTTP, "analytics.example.com", "/shiny/app/"),
                Want::Proxied,
            ),
            (
                (HTTP, "analytics.example.com", "/rstudio"),
                Want::Redirect(301, "http://analytics.example.com/rstudio/"),
            ),
        ],
    },
    Site {
        file: "gitlab.conf",
        websockets: &[(HTTPS, "gitlab.example.com", "/-/cable")],
        gets: &[
            ((HTTPS, "gitlab.example.com", "/explore"), Want::Proxied),
            (
                (HTTP, "gitlab.example.com", "/explore"),
                Want::Redirect(301, "https://gitlab.example.com/explore"),
            ),
        ],
    },
    Site {
        file: "jellyfin.conf",
        websockets: &[(HTTPS, "jellyfin.example.org", "/socket")],
        gets: &[
            (
                (HTTPS, "jellyfin.example.org", "/web/index.html"),
                Want::Proxied,
            ),
            (
                (HTTP, "jellyfin.example.org", "/web/"),
                Want::Redirect(301, "https://jellyfin.example.org/web/"),
            ),
        ],
    },
];

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/real-world")
}

/// Every site file of the corpus (the `.conf` files but the main `nginx.conf`).
fn site_files() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(corpus())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".conf") && n != "nginx.conf")
        .collect();
    names.sort();
    names
}

/// The content served from `@ROOT@`.
fn static_body(file: &str) -> String {
    format!("static root: {file}\n")
}

/// A prefix running `site`: the corpus's `nginx.conf` as `ringproxy.conf`, the seed
/// configurations' `mime.types`, `snippets/` and `sites-enabled/<site>` with the placeholders
/// substituted, a generated certificate, a static root and `logs/`.
fn prefix(site: &str, http: u16, https: u16, backend: &str, resolver: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    for sub in ["logs", "html", "snippets", "sites-enabled"] {
        std::fs::create_dir(p.join(sub)).unwrap();
    }
    certs::write_localhost(p);
    // ringproxy does not read dhparam files (rustls has no finite-field DH), but nginx does.
    std::fs::write(p.join("dhparam.pem"), "").unwrap();
    for f in ["index.html", "vnc.html", "favicon.ico"] {
        std::fs::write(p.join("html").join(f), static_body(f)).unwrap();
    }
    // A site's `auth_basic_user_file`, relative to the configuration's directory.
    std::fs::copy(corpus().join("htpasswd.users"), p.join("htpasswd.users")).unwrap();
    let subst = |text: String| {
        text.replace("@PORT_HTTPS@", &https.to_string())
            .replace("@PORT_HTTP@", &http.to_string())
            .replace("@BACKEND@", backend)
            .replace("@BACKEND_PORT@", backend.rsplit_once(':').unwrap().1)
            .replace("@RESOLVER@", resolver)
            .replace("@CERT@", p.join("certs/localhost.crt").to_str().unwrap())
            .replace("@KEY@", p.join("certs/localhost.key").to_str().unwrap())
            .replace("@ROOT@", p.join("html").to_str().unwrap())
            .replace("@DHPARAM@", p.join("dhparam.pem").to_str().unwrap())
            .replace("@PREFIX@", p.to_str().unwrap())
    };
    let read = |path: PathBuf| std::fs::read_to_string(path).unwrap();
    std::fs::write(p.join("ringproxy.conf"), read(corpus().join("nginx.conf"))).unwrap();
    std::fs::copy(common::seed_dir().join("mime.types"), p.join("mime.types")).unwrap();
    for e in std::fs::read_dir(corpus().join("snippets")).unwrap() {
        let e = e.unwrap();
        std::fs::write(
            p.join("snippets").join(e.file_name()),
            subst(read(e.path())),
        )
        .unwrap();
    }
    std::fs::write(
        p.join("sites-enabled").join(site),
        subst(read(corpus().join(site))),
    )
    .unwrap();
    dir
}

/// Every refusal of `-t` on the prefix: after each `[emerg]`, the line it names is commented
/// out (in this scratch copy) and `-t` runs again, until it passes or the refused line opens
/// a block (or does not go away).
fn refusals(dir: &Path) -> Vec<String> {
    let p = dir.to_str().unwrap();
    let mut found = Vec::new();
    for _ in 0..30 {
        let out = common::run(&["-p", p, "-c", "ringproxy.conf", "-t"]);
        if out.status.success() {
            return found;
        }
        let err = common::stderr(&out);
        let line = err
            .lines()
            .find(|l| l.contains("[emerg] "))
            .unwrap_or_else(|| panic!("-t failed without an [emerg]: {err}"));
        let (_, what) = line.split_once("[emerg] ").unwrap();
        // nginx names no line for an unknown variable either: the search stops there.
        let Some((message, place)) = what.rsplit_once(" in /") else {
            found.push(what.to_string());
            found.push(STOPPED_NO_LINE.to_string());
            return found;
        };
        found.push(message.to_string());
        let place = format!("/{place}");
        let (file, n) = place.rsplit_once(':').unwrap();
        let n: usize = n.parse().unwrap();
        let text = std::fs::read_to_string(file).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let target = &mut lines[n - 1];
        if target.trim_end().ends_with('{') || target.trim_start().starts_with('#') {
            found.push(STOPPED_BLOCK.to_string());
            return found;
        }
        target.insert(0, '#');
        std::fs::write(file, lines.join("\n") + "\n").unwrap();
    }
    panic!("more than 30 refusals: {found:#?}");
}

#[test]
fn every_site_passes_t_or_is_a_known_refusal() {
    let files = site_files();
    assert!(files.len() >= 20, "the corpus has {} sites", files.len());
    let results: Vec<(String, Vec<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = files
            .iter()
            .map(|f| {
                s.spawn(move || {
                    let dir = prefix(f, 80, 443, "127.0.0.1:3000", "127.0.0.1:53");
                    (f.clone(), refusals(dir.path()))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let refused: Vec<(String, Vec<String>)> = results
        .iter()
        .filter(|(_, r)| !r.is_empty())
        .cloned()
        .collect();
    let known: Vec<(String, Vec<String>)> = KNOWN_REFUSALS
        .iter()
        .map(|(f, r)| (f.to_string(), r.iter().map(|s| s.to_string()).collect()))
        .collect();
    assert_eq!(
        refused, known,
        "the refusals changed (left: found now, right: KNOWN_REFUSALS)"
    );
    // Every accepted site is run by the behaviour test, and only accepted ones.
    let mut accepted: Vec<&str> = results
        .iter()
        .filter(|(_, r)| r.is_empty())
        .map(|(f, _)| f.as_str())
        .collect();
    let mut run: Vec<&str> = SITES.iter().map(|s| s.file).collect();
    accepted.sort();
    run.sort();
    assert_eq!(accepted, run, "accepted sites (left) vs SITES (right)");
}

/// A WebSocket upgrade to `target` through the proxy, and echoes of a text and a 256 KiB
/// binary message.
async fn websocket(http: u16, https: u16, (secure, host, path): Target, site: &str) {
    let what = format!("{site}: WebSocket {host}{path}");
    let messages = [
        Message::text(format!("hello {site}")),
        Message::binary(common::big(256 * 1024)),
    ];
    let url = format!("{}://{host}{path}", if secure { "wss" } else { "ws" });
    let mut request = url.into_client_request().unwrap();
    if let Some(c) = credentials(site) {
        request
            .headers_mut()
            .insert("authorization", c.parse().unwrap());
    }
    if secure {
        let s = tls::connect(https, Some(host), tls::client(&[], &[]))
            .await
            .unwrap();
        let (mut ws, resp) =
            tokio::time::timeout(tls::T, tokio_tungstenite::client_async(request, s))
                .await
                .expect("upgrade in time")
                .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(resp.status(), 101, "{what}");
        common::echo_each(&mut ws, messages, &what).await;
        ws.close(None).await.unwrap();
    } else {
        let s = tokio::net::TcpStream::connect(("127.0.0.1", http))
            .await
            .unwrap();
        let (mut ws, resp) =
            tokio::time::timeout(tls::T, tokio_tungstenite::client_async(request, s))
                .await
                .expect("upgrade in time")
                .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(resp.status(), 101, "{what}");
        common::echo_each(&mut ws, messages, &what).await;
        ws.close(None).await.unwrap();
    }
}

async fn get(http: u16, https: u16, (secure, host, path): Target, auth: Option<&str>) -> String {
    if secure {
        let mut s = tls::connect(https, Some(host), tls::client(&[], &[]))
            .await
            .unwrap();
        get_on(&mut s, host, path, auth).await
    } else {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", http))
            .await
            .unwrap();
        get_on(&mut s, host, path, auth).await
    }
}

/// `tls::get`, with an `Authorization` header when `auth` is given.
async fn get_on<S>(s: &mut S, host: &str, path: &str, auth: Option<&str>) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let Some(auth) = auth else {
        return tls::get(s, host, path).await;
    };
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(tls::T, s.read_to_end(&mut out))
        .await
        .expect("response in time")
        .expect("a clean end of stream");
    String::from_utf8_lossy(&out).into_owned()
}

fn header<'a>(resp: &'a str, name: &str) -> Option<&'a str> {
    let head = resp.split_once("\r\n\r\n").map_or(resp, |(h, _)| h);
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn check_get(resp: &str, want: Want, what: &str) {
    let status = resp.lines().next().unwrap_or("");
    match want {
        Want::Proxied => {
            assert!(status.starts_with("HTTP/1.1 200 "), "{what}: {resp}");
            assert_eq!(
                tls::body(resp).as_bytes(),
                common::echo::ANSWER,
                "{what}: {resp}"
            );
        }
        Want::Static(file) => {
            assert!(status.starts_with("HTTP/1.1 200 "), "{what}: {resp}");
            assert_eq!(tls::body(resp), static_body(file), "{what}: {resp}");
        }
        Want::Closed => assert_eq!(resp, "", "{what}"),
        Want::Challenge(realm) => {
            assert!(status.starts_with("HTTP/1.1 401 "), "{what}: {resp}");
            let want = format!("Basic realm=\"{realm}\"");
            assert_eq!(
                header(resp, "www-authenticate"),
                Some(want.as_str()),
                "{what}: {resp}"
            );
        }
        Want::Redirect(code, location) => {
            assert!(
                status.starts_with(&format!("HTTP/1.1 {code} ")),
                "{what}: {resp}"
            );
            assert_eq!(header(resp, "location"), Some(location), "{what}: {resp}");
        }
    }
}

/// The echo backend on each unix socket the site proxies to (`proxy_pass http://unix:PATH:`).
fn unix_backends(site: &Path) -> Vec<common::echo::UnixEcho> {
    let text = std::fs::read_to_string(site).unwrap();
    text.split("http://unix:")
        .skip(1)
        .map(|rest| {
            let path = Path::new(rest.split_once(':').unwrap().0);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            common::echo::UnixEcho::start(path)
        })
        .collect()
}

fn run_site(site: &Site, backend: &str) {
    let (http, https) = (common::free_port(), common::free_port());
    // What resolver-using sites (swag-homeassistant.conf) look their backend up in.
    let dns = common::dns::Dns::start();
    dns.set("homeassistant", &[std::net::Ipv4Addr::LOCALHOST], 30);
    let dir = prefix(site.file, http, https, backend, &dns.addr.to_string());
    let _unix_backends = unix_backends(&dir.path().join("sites-enabled").join(site.file));
    let proxy = Proxy::start_in(dir, http, "", &[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for &target in site.websockets {
            websocket(http, https, target, site.file).await;
        }
        for &(target, want) in site.gets {
            let what = format!(
                "{}: GET {}{} (tls: {})",
                site.file, target.1, target.2, target.0
            );
            let auth = credentials(site.file).filter(|_| !matches!(want, Want::Challenge(_)));
            check_get(&get(http, https, target, auth).await, want, &what);
        }
    });
    drop(proxy);
}

#[test]
fn accepted_sites_proxy_a_websocket_and_plain_requests_as_nginx() {
    let echo = Echo::start();
    let backend = echo.addr.to_string();
    std::thread::scope(|s| {
        let handles: Vec<_> = SITES
            .iter()
            .map(|site| {
                let backend = backend.as_str();
                (site.file, s.spawn(move || run_site(site, backend)))
            })
            .collect();
        let failed: Vec<&str> = handles
            .into_iter()
            .filter_map(|(f, h)| h.join().is_err().then_some(f))
            .collect();
        assert!(
            failed.is_empty(),
            "sites that failed (see above): {failed:?}"
        );
    });
}
