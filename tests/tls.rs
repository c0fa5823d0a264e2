//! The CLI over https: the real `grantline serve` behind a TLS-terminating proxy
//! (tests/python/tls_proxy.py, Python's `ssl`), with a CA and a server certificate for
//! 127.0.0.1 made by the `openssl` CLI. The client trusts the CA named by `SSL_CERT_FILE`;
//! without it, the system's store does not know the CA and the command fails saying
//! "certificate".
//!
//! Without `openssl` or `python3` the test prints a notice and skips, unless `CI=true`, where
//! it fails. `.ci/run` installs Debian's `openssl`.

mod common;
mod common_audit;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use common_audit::*;

/// How long the proxy may take to print its port.
const PROXY_START_TIMEOUT: Duration = Duration::from_secs(30);
/// The proxy exits by itself after this long, should the test die before killing it.
const PROXY_LIFETIME_S: u64 = 600;

const CA_CONFIG: &str = "\
[req]
distinguished_name = dn
x509_extensions = v3_ca
prompt = no
[dn]
CN = grantline test CA
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
";

const SERVER_REQUEST_CONFIG: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = localhost
";

const SERVER_EXTENSIONS: &str = "\
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

/// Whether `tool --version`-like `args` runs; otherwise a notice (or a failure under CI).
fn have(tool: &str, args: &[&str], install: &str) -> bool {
    let ran = Command::new(tool).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status();
    if matches!(ran, Ok(status) if status.success()) {
        return true;
    }
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{tool} is missing under CI; install {install}");
    eprintln!("NOTICE: {tool} not found; skipping the TLS test (apt-get install {install})");
    false
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA (`ca.pem`) and a server certificate it signed for 127.0.0.1 and localhost
/// (`server.pem`, `server-key.pem`), in `dir`. P-256 keys: quick to make.
fn make_certificates(dir: &Path) -> PathBuf {
    std::fs::write(dir.join("ca.cnf"), CA_CONFIG).unwrap();
    std::fs::write(dir.join("server.cnf"), SERVER_REQUEST_CONFIG).unwrap();
    std::fs::write(dir.join("server-ext.cnf"), SERVER_EXTENSIONS).unwrap();
    let new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let mut ca = vec!["req", "-x509", "-config", "ca.cnf", "-days", "2", "-keyout", "ca-key.pem", "-out", "ca.pem"];
    ca.extend(new_key);
    openssl(dir, &ca);
    let mut csr = vec!["req", "-new", "-config", "server.cnf", "-keyout", "server-key.pem", "-out", "server.csr"];
    csr.extend(new_key);
    openssl(dir, &csr);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server-ext.cnf",
            "-out",
            "server.pem",
        ],
    );
    dir.join("ca.pem")
}

/// The TLS proxy in front of `backend`; killed on drop.
struct Proxy {
    child: Child,
    url: String,
}

impl Proxy {
    fn start(dir: &Path, backend: &Server) -> Proxy {
        let backend_port = backend.url.rsplit(':').next().unwrap().to_string();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/tls_proxy.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(dir.join("server.pem"))
            .arg(dir.join("server-key.pem"))
            .arg(&backend_port)
            .arg(PROXY_LIFETIME_S.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the TLS proxy");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(PROXY_START_TIMEOUT) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the TLS proxy did not start");
            }
        };
        let port = line.trim().strip_prefix("listening ").unwrap_or_else(|| panic!("proxy said {line:?}"));
        Proxy { child, url: format!("https://127.0.0.1:{port}") }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `grantline ARGS` with `SSL_CERT_FILE` set to `ca` (or unset), and no other CA settings.
fn grantline_tls(args: &[&str], ca: Option<&Path>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("GRANTLINE_SERVER")
        .env_remove("GRANTLINE_KEY")
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR");
    if let Some(ca) = ca {
        cmd.env("SSL_CERT_FILE", ca);
    }
    cmd.output().unwrap()
}

#[test]
fn the_cli_reaches_a_server_behind_a_tls_proxy_and_refuses_an_untrusted_certificate() {
    if !have("openssl", &["version"], "openssl") || !have("python3", &["--version"], "python3") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let ca = make_certificates(tmp.path());
    let server = Server::start(&tmp.path().join("data"));
    let cast = cast(&server, tmp.path());
    grant_many(&server, &cast, "tls", 1);
    wait_for_size(&server, 11);
    let log_key = server.log().log_key;
    let proxy = Proxy::start(tmp.path(), &server);
    let url = proxy.url.as_str();

    // Reading: the grant made over plain http shows over https.
    let out = grantline_tls(&["allocations", "--server", url], Some(&ca));
    let table = assert_ok(&out);
    assert!(table.contains("tls-feedstock-0") && table.contains(RESOURCE), "{table}");

    // Auditing: the whole log verifies through the proxy against the pinned key.
    let out = grantline_tls(&["verify", "--server", url, "--log-key", log_key.as_str()], Some(&ca));
    let report = assert_ok(&out);
    assert!(report.contains("verified: 11 events"), "{report}");
    // A receipt by seq, over https too.
    let out = grantline_tls(&["prove", "--seq", "0", "--server", url, "--log-key", log_key.as_str()], Some(&ca));
    assert!(assert_ok(&out).contains("\"seq\":0"));

    // Without the CA bundle the system's store does not know the CA: a certificate error,
    // said in words, for reads and audits alike.
    for args in [vec!["allocations", "--server", url], vec!["verify", "--server", url, "--log-key", log_key.as_str()]] {
        let out = grantline_tls(&args, None);
        assert_ne!(code(&out), 0, "{args:?} trusted an unknown CA: {}", stdout(&out));
        let said = stderr(&out);
        assert!(said.contains("certificate"), "{args:?}: {said}");
        assert!(said.contains("SSL_CERT_FILE"), "{args:?} does not say how to trust a CA: {said}");
    }

    // A bundle that cannot be read is named, not taken for an empty store.
    let missing = tmp.path().join("no-such-ca.pem");
    let out = grantline_tls(&["allocations", "--server", url], Some(&missing));
    assert_ne!(code(&out), 0);
    let said = stderr(&out);
    assert!(said.contains("SSL_CERT_FILE") && said.contains("no-such-ca.pem"), "{said}");

    // Plain http keeps working; other schemes get the clear message.
    let out = grantline_tls(&["allocations", "--server", &server.url], None);
    assert!(assert_ok(&out).contains("tls-feedstock-0"));
    let out = grantline_tls(&["allocations", "--server", "ftp://127.0.0.1:1"], None);
    assert_ne!(code(&out), 0);
    assert!(stderr(&out).contains("must be an http:// or https:// URL"), "{}", stderr(&out));

    drop(proxy);
    server.stop();
}
