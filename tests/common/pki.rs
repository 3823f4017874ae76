//! Self-signed certificates for the router's client hop, made by openssl in a private
//! directory (one per test binary, through the caller's `OnceLock`).

use std::process::{Command, Stdio};

/// `openssl req -x509` with the key options `newkey` (e.g. `["rsa:2048"]` or
/// `["ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]`), CN=localhost, valid 2 days;
/// the paths of the certificate and the key.
pub fn self_signed(dir_name: &str, newkey: &[&str]) -> (String, String) {
    let dir = super::tmp_dir(dir_name);
    let st = Command::new("openssl")
        .args(["req", "-x509", "-newkey"])
        .args(newkey)
        .args([
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
        ])
        .current_dir(&dir)
        .stderr(Stdio::null())
        .status()
        .expect("openssl (apt-get install openssl)");
    assert!(st.success(), "openssl req failed");
    let p = |f: &str| dir.join(f).display().to_string();
    (p("cert.pem"), p("key.pem"))
}
