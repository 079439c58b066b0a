//! The device's side of ingest's RSU API, over plain blocking HTTP/1.1 with short timeouts:
//! a handheld on stadium Wi-Fi must find out quickly that the server is unreachable.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde_json::Value;

use crate::EdgeError;

pub struct Client {
    host: String,
    api_key: String,
    timeout: Duration,
}

impl Client {
    /// `server_url` is `http://host:port` (TLS is terminated in front of ingest in production).
    pub fn new(server_url: &str, api_key: &str) -> Result<Self, EdgeError> {
        let host = server_url
            .strip_prefix("http://")
            .ok_or_else(|| {
                EdgeError::Config(format!(
                    "server URL {server_url:?} must look like http://host:port"
                ))
            })?
            .trim_end_matches('/')
            .to_owned();
        Ok(Self {
            host,
            api_key: api_key.to_owned(),
            timeout: Duration::from_secs(5),
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
        stream.write_all(head.as_bytes()).map_err(unreachable)?;
        stream.write_all(payload.as_bytes()).map_err(unreachable)?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).map_err(unreachable)?;
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
