//! End-to-end: `orchestrator-cli token create`, a daemon with those tokens serving HTTPS (a
//! certificate made with the `openssl` command, as docs/security.md shows), and the CLI reaching
//! it with `--token`/`ORCHESTRATOR_TOKEN`, `--ca-cert` or its config file; then `token list`,
//! and `token revoke` with a SIGHUP ending a token's access.

mod common;

use common::{cli_exe, write};
use orchestrator_testkit::Daemon;
use std::path::Path;
use std::process::{Command, Output};

/// A self-signed certificate for 127.0.0.1 and localhost, and its key: `(cert, key)` paths.
fn self_signed(dir: &Path) -> (String, String) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=orchestrator-test"])
        .args([
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("running openssl (Debian's openssl package)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        cert.to_str().unwrap().to_owned(),
        key.to_str().unwrap().to_owned(),
    )
}

/// `orchestrator-cli ARGS` with `envs`, and no config file but the one the args name.
fn cli(args: &[&str], envs: &[(&str, &str)], home: &Path) -> Output {
    Command::new(cli_exe())
        .args(args)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("ORCHESTRATOR_TOKEN")
        .env_remove("ORCHESTRATOR_SERVER")
        .envs(envs.iter().copied())
        .output()
        .expect("running orchestrator-cli")
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fails(out: Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
}

#[test]
fn tokens_tls_and_the_config_file_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let tokens = dir.path().join("tokens.yaml");
    let tokens_arg = tokens.to_str().unwrap();
    let admin = ok(cli(
        &["token", "create", "--name", "ops", "--file", tokens_arg],
        &[],
        home,
    ));
    let admin = admin.trim();
    let reader = ok(cli(
        &[
            "token",
            "create",
            "--name",
            "viewer",
            "--role",
            "read-only",
            "--file",
            tokens_arg,
        ],
        &[],
        home,
    ));
    let reader = reader.trim();
    let (cert, key) = self_signed(dir.path());
    let d = Daemon::builder()
        .simulated()
        .args([
            "--tokens",
            tokens_arg,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ])
        .start();
    let server = format!("https://127.0.0.1:{}", d.addr().port());
    let manifest = write(
        dir.path(),
        "web.yaml",
        "name: web\nreplicas: 1\ncontainers:\n  - name: main\n    image: demo/app:1\n",
    );

    // Flags: server, CA and token. (The kit cannot probe an HTTPS daemon: wait here.)
    let base = ["--server", server.as_str(), "--ca-cert", cert.as_str()];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !cli(
        &with(&base, &["--token", admin, "cluster", "info"]),
        &[],
        home,
    )
    .status
    .success()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "not ready over HTTPS: {:?}",
            d.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    fn with<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        [base, extra].concat()
    }
    ok(cli(
        &with(
            &base,
            &["--token", admin, "workload", "create", "-f", &manifest],
        ),
        &[],
        home,
    ));
    // The token from the environment; read-only may read but not change.
    let listed = ok(cli(
        &with(&base, &["workload", "list"]),
        &[("ORCHESTRATOR_TOKEN", reader)],
        home,
    ));
    assert!(listed.contains("web"), "{listed}");
    fails(
        cli(
            &with(&base, &["workload", "scale", "web", "--replicas", "2"]),
            &[("ORCHESTRATOR_TOKEN", reader)],
            home,
        ),
        "read-only",
    );
    // No token, a wrong one: the server's message.
    fails(
        cli(&with(&base, &["workload", "list"]), &[], home),
        "needs a token",
    );
    fails(
        cli(
            &with(&base, &["--token", "orc_nope", "workload", "list"]),
            &[],
            home,
        ),
        "not valid",
    );
    // Without the CA the certificate is not trusted; plain http to the TLS port gets nowhere.
    fails(
        cli(
            &["--server", &server, "--token", admin, "workload", "list"],
            &[],
            home,
        ),
        "error",
    );
    fails(
        cli(
            &["--server", &d.url(), "--token", admin, "workload", "list"],
            &[],
            home,
        ),
        "error",
    );

    // The config file at its default place (~/.config/orchestrator/config.yaml) names the server,
    // a token file and the CA; `--context` picks another entry.
    let token_file = write(dir.path(), "ops.token", &format!("{admin}\n"));
    std::fs::create_dir_all(home.join(".config/orchestrator")).unwrap();
    write(
        &home.join(".config/orchestrator"),
        "config.yaml",
        &format!(
            "current: prod\nservers:\n  - name: prod\n    server: {server}\n    token_file: {token_file}\n    ca_cert: {cert}\n  - name: viewer\n    server: {server}\n    token: {reader}\n    ca_cert: {cert}\n"
        ),
    );
    ok(cli(
        &["workload", "scale", "web", "--replicas", "2"],
        &[],
        home,
    ));
    fails(
        cli(
            &["--context", "viewer", "workload", "delete", "web"],
            &[],
            home,
        ),
        "read-only",
    );
    fails(
        cli(&["--context", "nope", "workload", "list"], &[], home),
        "no server named \"nope\"",
    );
    ok(cli(&["workload", "delete", "web"], &[], home));

    // `token list` names the tokens; `token revoke` and SIGHUP: the viewer's token stops working.
    let listed = ok(cli(&["token", "list", "--file", tokens_arg], &[], home));
    assert!(
        listed.contains("ops") && listed.contains("viewer"),
        "{listed}"
    );
    ok(cli(
        &["token", "revoke", "--name", "viewer", "--file", tokens_arg],
        &[],
        home,
    ));
    let pid = d.pid().expect("the daemon runs").to_string();
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let out = cli(&["--context", "viewer", "workload", "list"], &[], home);
        if !out.status.success() {
            fails(out, "not valid");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the revoked token still works"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    ok(cli(&["workload", "list"], &[], home));
}
