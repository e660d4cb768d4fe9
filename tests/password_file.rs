//! `ssl_password_file` and `proxy_ssl_password_file` through a running ringproxy: keys
//! encrypted as OpenSSL 3 writes them (PKCS#8 "ENCRYPTED PRIVATE KEY", PBES2 with PBKDF2 and
//! AES-CBC), each password of the file tried in turn; a file without the right one, and the
//! legacy `Proc-Type: 4,ENCRYPTED` format, are configuration errors.

mod common;

use common::certs::{Ca, Leaf};
use common::tls::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;

/// `leaf`'s key encrypted with `password` as PEM "ENCRYPTED PRIVATE KEY".
fn encrypted_key(leaf: &Leaf, password: &str) -> String {
    use base64::Engine;
    let der = match PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap() {
        PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
        _ => panic!("rcgen writes PKCS#8"),
    };
    let info = pkcs8::PrivateKeyInfo::try_from(der.as_slice()).unwrap();
    let params = pkcs8::pkcs5::pbes2::Parameters::pbkdf2_sha256_aes128cbc(
        2048,
        b"8 bytes!",
        b"sixteen byte iv!",
    )
    .unwrap();
    let doc = info.encrypt_with_params(params, password).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(doc.as_bytes());
    let mut pem = String::from("-----BEGIN ENCRYPTED PRIVATE KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap());
        pem.push('\n');
    }
    pem + "-----END ENCRYPTED PRIVATE KEY-----\n"
}

fn write(dir: &std::path::Path, name: &str, text: &str) {
    std::fs::write(dir.join("certs").join(name), text).unwrap();
}

/// `ringproxy -t` on `conf` in `dir`: its stderr when it fails.
fn check_fails(dir: &std::path::Path, conf: &str) -> String {
    std::fs::write(dir.join("check.conf"), conf).unwrap();
    let p = dir.to_str().unwrap();
    let out = common::run(&["-p", p, "-c", "check.conf", "-t"]);
    assert!(!out.status.success(), "{}", common::stderr(&out));
    common::stderr(&out)
}

// effect: ssl_password_file
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_password_file_opens_an_encrypted_server_key() {
    let leaf = Ca::new().leaf(&["a.test"], true);
    let dir = prefix_with(&[("a", &leaf)]);
    write(dir.path(), "a.enc.key", &encrypted_key(&leaf, "right one"));
    // nginx tries each line; CRLF line ends and empty lines are no passwords.
    write(dir.path(), "passwords", "wrong\r\n\r\nright one\r\n");
    write(dir.path(), "wrong", "wrong\n");
    let legacy = leaf.key_pem.replace(
        "-----BEGIN PRIVATE KEY-----\n",
        "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00000000000000000000000000000000\n\n",
    );
    write(dir.path(), "legacy.key", &legacy);
    let server = |key: &str, passwords: &str, port: u16| {
        format!(
            "events {{}}\nhttp {{ server {{ listen 127.0.0.1:{port} ssl;
              ssl_certificate certs/a.crt; ssl_certificate_key certs/{key};
              ssl_password_file certs/{passwords}; return 200 served; }} }}\n"
        )
    };
    let err = check_fails(dir.path(), &server("a.enc.key", "wrong", 1));
    assert!(
        err.contains("no password of the password file decrypts the key"),
        "{err}"
    );
    let err = check_fails(dir.path(), &server("legacy.key", "passwords", 1));
    assert!(err.contains("openssl pkcs8 -topk8"), "{err}");

    let port = common::free_port();
    let _p = start(dir, port, &server("a.enc.key", "passwords", port));
    let mut s = connect(port, Some("a.test"), client(&[], &[]))
        .await
        .unwrap();
    let served = s.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    assert_eq!(served, leaf.der);
    let r = get(&mut s, "a.test", "/").await;
    assert_eq!(body(&r), "served", "{r}");
}

// effect: proxy_ssl_password_file
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_ssl_password_file_opens_the_key_presented_to_a_backend() {
    let server = Ca::new().leaf(&["a.test"], false);
    let ca = Ca::named("clients");
    let to_backend = ca.leaf(&["proxy.client"], false);
    let dir = prefix_with(&[("a", &server), ("client", &to_backend)]);
    write(dir.path(), "ca.crt", &ca.pem());
    write(
        dir.path(),
        "client.enc.key",
        &encrypted_key(&to_backend, "s3cret"),
    );
    write(dir.path(), "pw", "s3cret\n");
    let (front, back) = (common::free_port(), common::free_port());
    // The backend is ringproxy too: it requires a client certificate and names it.
    let conf = format!(
        "events {{}}\nhttp {{
          ssl_certificate certs/a.crt; ssl_certificate_key certs/a.key;
          server {{ listen 127.0.0.1:{back} ssl; ssl_verify_client on;
                   ssl_client_certificate certs/ca.crt; return 200 \"backend saw $ssl_client_s_dn\"; }}
          server {{ listen 127.0.0.1:{front};
                   location / {{ proxy_pass https://127.0.0.1:{back};
                                proxy_ssl_certificate certs/client.crt;
                                proxy_ssl_certificate_key certs/client.enc.key;
                                proxy_ssl_password_file certs/pw; }} }}
        }}\n"
    );
    let _p = start(dir, front, &conf);
    let r = plain(front, "/").await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert_eq!(body(&r), "backend saw CN=proxy.client", "{r}");
}
