//! The device's side of ingest's RSU API, over blocking HTTP/1.1 with short timeouts (a
//! handheld on stadium Wi-Fi must find out quickly that the server is unreachable), and over
//! TLS: the API key and the buyers' details cross networks nobody controls. Plain HTTP only
//! when the device was enrolled with the explicit development flag.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::EdgeError;

pub struct Client {
    host: String,
    api_key: String,
    timeout: Duration,
    /// `None`: plain HTTP, allowed by the development flag.
    tls: Option<(
        Arc<rustls::ClientConfig>,
        rustls::pki_types::ServerName<'static>,
    )>,
}

/// How the device may reach its server.
#[derive(Debug, Clone, Default)]
pub struct Transport {
    /// PEM of the CA (or the server's own certificate) to trust; the system's roots if none.
    pub ca_pem: Option<String>,
    /// Development only: `http://` is refused unless this is set.
    pub allow_plain_http: bool,
}

impl Client {
    /// `server_url` is `https://host:port`, or `http://host:port` when the transport allows it.
    pub fn new(server_url: &str, api_key: &str, transport: &Transport) -> Result<Self, EdgeError> {
        let (tls, rest) = if let Some(rest) = server_url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = server_url.strip_prefix("http://") {
            if !transport.allow_plain_http {
                return Err(EdgeError::Config(format!(
                    "server URL {server_url:?} is plain HTTP: the device speaks HTTPS (https://host:port); plain HTTP only with --allow-plain-http, for development"
                )));
            }
            (false, rest)
        } else {
            return Err(EdgeError::Config(format!(
                "server URL {server_url:?} must look like https://host:port"
            )));
        };
        let host = rest.trim_end_matches('/').to_owned();
        let tls = if tls {
            let name = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
            let name = name.trim_start_matches('[').trim_end_matches(']');
            let server_name = rustls::pki_types::ServerName::try_from(name.to_owned())
                .map_err(|e| EdgeError::Config(format!("server name {name:?}: {e}")))?;
            let config =
                platform::tls::client_config(transport.ca_pem.as_deref().map(str::as_bytes))
                    .map_err(|e| EdgeError::Config(e.to_string()))?;
            Some((config, server_name))
        } else {
            None
        };
        Ok(Self {
            host,
            api_key: api_key.to_owned(),
            timeout: Duration::from_secs(5),
            tls,
        })
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), EdgeError> {
        let unreachable = |e: std::io::Error| EdgeError::Unreachable(format!("{}: {e}", self.host));
        let addr = self
            .host
            .to_socket_addrs()
            .map_err(unreachable)?
            .next()
            .ok_or_else(|| EdgeError::Unreachable(format!("{}: no address", self.host)))?;
        let mut stream = TcpStream::connect_timeout(&addr, self.timeout).map_err(unreachable)?;
        stream
            .set_read_timeout(Some(self.timeout * 6))
            .map_err(unreachable)?;
        stream
            .set_write_timeout(Some(self.timeout))
            .map_err(unreachable)?;
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let head = format!(
            "{method} /v1/{path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.host,
            self.api_key,
            payload.len()
        );
        let raw = match &self.tls {
            None => exchange(&mut stream, head.as_bytes(), payload.as_bytes()),
            Some((config, name)) => {
                let connection = rustls::ClientConnection::new(config.clone(), name.clone())
                    .map_err(|e| EdgeError::Unreachable(format!("{}: TLS: {e}", self.host)))?;
                let mut tls = rustls::StreamOwned::new(connection, stream);
                exchange(&mut tls, head.as_bytes(), payload.as_bytes())
            }
        }
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::InvalidData {
                // A certificate the device does not trust is not a network hiccup.
                EdgeError::Config(format!(
                    "{}: the server's TLS certificate is not trusted ({e}); enroll with --ca the server's CA",
                    self.host
                ))
            } else {
                unreachable(e)
            }
        })?;
        let response = platform::http_client::parse_response(&raw)
            .map_err(|e| EdgeError::BadAnswer(format!("{method} /v1/{path}: {e}")))?;
        let value: Value = serde_json::from_slice(&response.body).map_err(|e| {
            EdgeError::BadAnswer(format!(
                "{method} /v1/{path} answered {} with something that is not JSON ({e}): {}",
                response.status,
                String::from_utf8_lossy(&response.body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ))
        })?;
        match response.status {
            200..=299 => Ok((response.status, value)),
            401 => Err(EdgeError::KeyRefused(
                value["detail"]
                    .as_str()
                    .unwrap_or("the API key was refused")
                    .to_owned(),
            )),
            500..=599 => Err(EdgeError::Unreachable(format!(
                "the server answered {}: {}",
                response.status,
                value["detail"].as_str().unwrap_or("")
            ))),
            status => Err(EdgeError::Refused {
                status,
                detail: value["detail"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| value.to_string()),
            }),
        }
    }

    pub fn get(&self, path: &str) -> Result<Value, EdgeError> {
        self.send("GET", path, None).map(|(_, v)| v)
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Value, EdgeError> {
        self.send("POST", path, Some(body)).map(|(_, v)| v)
    }
}

/// Writes the request and reads the whole answer (`Connection: close`). A TLS peer that closes
/// without a close_notify after a complete answer has still answered.
fn exchange(
    stream: &mut (impl Read + Write),
    head: &[u8],
    body: &[u8],
) -> std::io::Result<Vec<u8>> {
    stream.write_all(head)?;
    stream.write_all(body)?;
    stream.flush()?;
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw) {
        Ok(_) => Ok(raw),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => Ok(raw),
        Err(e) => Err(e),
    }
}
