//! The software's name, version and the SHA-256 of its own executable, which regulators
//! require every component to show so an inspector can compare it with the certified build.

use std::io::Read;

use sha2::{Digest, Sha256};

/// SHA-256 of the running executable, as lowercase hex.
pub fn executable_sha256() -> std::io::Result<String> {
    let path = std::env::current_exe()?;
    let mut file = std::fs::File::open(&path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// `raffle 0.1.0 sha256:…`, or the reason the hash could not be read.
pub fn version_line(name: &str, version: &str) -> String {
    match executable_sha256() {
        Ok(hash) => format!("{name} {version} sha256:{hash}"),
        Err(e) => format!("{name} {version} sha256:unavailable ({e})"),
    }
}
