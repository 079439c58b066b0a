//! The payment provider's Refunds API as the worker uses it: Stripe's `POST /v1/refunds` (form
//! encoded, `Authorization: Bearer <secret key>`, an `Idempotency-Key` header) and
//! `GET /v1/refunds?payment_intent=…` to find a refund already made. Over HTTPS to
//! `https://api.stripe.com` in production; tests and the demo point it at the local stand-in
//! (`scenario::stripe`), which speaks plain HTTP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use uuid::Uuid;

/// Where a provider call goes.
#[derive(Clone)]
pub struct StripeApi {
    scheme_tls: bool,
    host: String,
    port: u16,
    secret_key: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
}

/// One refund to ask for.
#[derive(Debug, Clone)]
pub struct RefundAsk<'a> {
    pub idempotency_key: &'a str,
    pub payment_intent: &'a str,
    pub amount_minor: i64,
    pub obligation_id: Uuid,
    pub raffle_id: Uuid,
    pub order_id: Option<Uuid>,
    /// Stripe's `reason`: `duplicate` for a second payment, else `requested_by_customer`.
    pub reason: &'a str,
}

/// What the provider answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderAnswer {
    /// A refund object: made now, or replayed for the same key, or found.
    Refund {
        id: String,
        status: String,
        failure_reason: Option<String>,
        /// The key our metadata carries, when the refund is one of ours.
        idempotency_key: Option<String>,
    },
    /// Too many requests (429): wait, then ask again with the same key.
    RateLimited { retry_after: Option<Duration> },
    /// The provider refused the request for good (4xx): no retry under this key helps.
    Refused {
        http_status: u16,
        code: String,
        message: String,
    },
    /// Not reached or not answered usefully (network, timeout, 5xx): ask again later, same key.
    Unavailable(String),
    /// A look-up found no refund of ours for the payment.
    NotFound,
}

impl StripeApi {
    /// `base_url` is `https://api.stripe.com` or a stand-in's `http://127.0.0.1:PORT`.
    pub fn new(base_url: &str, secret_key: &str) -> Result<Self, String> {
        let (tls, rest) = if let Some(rest) = base_url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = base_url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(format!(
                "the provider API URL {base_url:?} must start with https:// (or http:// for a local stand-in)"
            ));
        };
        let authority = rest.trim_end_matches('/');
        if authority.contains('/') {
            return Err(format!(
                "the provider API URL {base_url:?} must be a scheme and a host, with no path"
            ));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (
                h.to_owned(),
                p.parse()
                    .map_err(|_| format!("the provider API URL {base_url:?} has a bad port"))?,
            ),
            None => (authority.to_owned(), if tls { 443 } else { 80 }),
        };
        if host.is_empty() {
            return Err(format!("the provider API URL {base_url:?} has no host"));
        }
        if secret_key.trim().is_empty() {
            return Err("the provider's secret key is empty".into());
        }
        let tls = if tls {
            Some(platform::tls::client_config(None).map_err(|e| e.to_string())?)
        } else {
            None
        };
        Ok(Self {
            scheme_tls: tls.is_some(),
            host,
            port,
            secret_key: secret_key.to_owned(),
            tls,
            timeout: Duration::from_secs(30),
        })
    }

    pub fn base_url(&self) -> String {
        format!(
            "{}://{}:{}",
            if self.scheme_tls { "https" } else { "http" },
            self.host,
            self.port
        )
    }

    /// `POST /v1/refunds` for `ask`, under its Idempotency-Key.
    pub async fn create_refund(&self, ask: &RefundAsk<'_>) -> ProviderAnswer {
        let mut form = vec![
            ("payment_intent", ask.payment_intent.to_owned()),
            ("amount", ask.amount_minor.to_string()),
            ("reason", ask.reason.to_owned()),
            ("metadata[obligation_id]", ask.obligation_id.to_string()),
            ("metadata[raffle_id]", ask.raffle_id.to_string()),
            ("metadata[idempotency_key]", ask.idempotency_key.to_owned()),
        ];
        if let Some(order) = ask.order_id {
            form.push(("metadata[order_id]", order.to_string()));
        }
        let body = form_encode(&form);
        match self
            .send(
                "POST",
                "/v1/refunds",
                &[
                    ("Idempotency-Key", ask.idempotency_key),
                    ("Content-Type", "application/x-www-form-urlencoded"),
                ],
                body.as_bytes(),
            )
            .await
        {
            Ok((status, headers, json)) => answer(status, &headers, json),
            Err(e) => ProviderAnswer::Unavailable(e),
        }
    }

    /// The refund of ours, for `payment_intent`, made under `idempotency_key`, if there is one
    /// (pages through the payment's refunds).
    pub async fn find_refund(&self, payment_intent: &str, idempotency_key: &str) -> ProviderAnswer {
        let mut after: Option<String> = None;
        for _ in 0..50 {
            let mut query = vec![
                ("payment_intent", payment_intent.to_owned()),
                ("limit", "100".to_owned()),
            ];
            if let Some(a) = &after {
                query.push(("starting_after", a.clone()));
            }
            let path = format!("/v1/refunds?{}", form_encode(&query));
            let (status, headers, json) = match self.send("GET", &path, &[], b"").await {
                Ok(r) => r,
                Err(e) => return ProviderAnswer::Unavailable(e),
            };
            if status != 200 {
                return answer(status, &headers, json);
            }
            let Some(Value::Array(data)) = json.as_ref().and_then(|j| j.get("data")).cloned()
            else {
                return ProviderAnswer::Unavailable("the refund list has no data".into());
            };
            for refund in &data {
                if refund["metadata"]["idempotency_key"].as_str() == Some(idempotency_key) {
                    return answer(200, &[], Some(refund.clone()));
                }
            }
            let more = json.as_ref().and_then(|j| j["has_more"].as_bool()) == Some(true);
            match data.last().and_then(|r| r["id"].as_str()) {
                Some(last) if more => after = Some(last.to_owned()),
                _ => return ProviderAnswer::NotFound,
            }
        }
        ProviderAnswer::Unavailable("the payment has more refunds than the look-up pages".into())
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(u16, Vec<(String, String)>, Option<Value>), String> {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\n",
            self.host,
            self.secret_key,
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let mut message = head.into_bytes();
        message.extend_from_slice(body);
        let exchange = async {
            let addr: SocketAddr = tokio::net::lookup_host((self.host.as_str(), self.port))
                .await
                .map_err(|e| format!("resolving {}: {e}", self.host))?
                .next()
                .ok_or_else(|| format!("{} resolves to no address", self.host))?;
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|e| format!("connecting to {}: {e}", self.base_url()))?;
            let mut raw = Vec::new();
            match &self.tls {
                None => {
                    let mut stream = stream;
                    stream
                        .write_all(&message)
                        .await
                        .map_err(|e| e.to_string())?;
                    stream
                        .read_to_end(&mut raw)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Some(config) => {
                    let name = rustls_pki_types::ServerName::try_from(self.host.clone())
                        .map_err(|e| format!("{}: {e}", self.host))?;
                    let mut tls = tokio_rustls::TlsConnector::from(config.clone())
                        .connect(name, stream)
                        .await
                        .map_err(|e| format!("TLS with {}: {e}", self.host))?;
                    tls.write_all(&message).await.map_err(|e| e.to_string())?;
                    tls.read_to_end(&mut raw).await.map_err(|e| e.to_string())?;
                }
            }
            platform::http_client::parse_response(&raw).map_err(|e| e.to_string())
        };
        let response = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| format!("{} did not answer in {:?}", self.base_url(), self.timeout))??;
        let json = serde_json::from_slice(&response.body).ok();
        Ok((
            response.status,
            response.headers.into_iter().collect(),
            json,
        ))
    }
}

fn answer(status: u16, headers: &[(String, String)], json: Option<Value>) -> ProviderAnswer {
    match status {
        200 => match json {
            Some(r) if r["object"] == "refund" && r["id"].is_string() => ProviderAnswer::Refund {
                id: r["id"].as_str().unwrap_or_default().to_owned(),
                status: r["status"].as_str().unwrap_or("pending").to_owned(),
                failure_reason: r["failure_reason"].as_str().map(str::to_owned),
                idempotency_key: r["metadata"]["idempotency_key"].as_str().map(str::to_owned),
            },
            _ => ProviderAnswer::Unavailable("a 200 answer that is not a refund".into()),
        },
        429 => ProviderAnswer::RateLimited {
            retry_after: headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
                .and_then(|(_, v)| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs),
        },
        400..=499 => {
            let error = json.as_ref().map(|j| &j["error"]);
            ProviderAnswer::Refused {
                http_status: status,
                code: error
                    .and_then(|e| e["code"].as_str().or(e["type"].as_str()))
                    .unwrap_or("refused")
                    .to_owned(),
                message: error
                    .and_then(|e| e["message"].as_str())
                    .unwrap_or("the provider refused the refund")
                    .to_owned(),
            }
        }
        _ => ProviderAnswer::Unavailable(format!("the provider answered {status}")),
    }
}

/// `application/x-www-form-urlencoded`, keys and values percent-encoded (brackets included).
pub fn form_encode(pairs: &[(&str, String)]) -> String {
    fn enc(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The pairs of a form body or a query string, decoded.
pub fn form_decode(text: &str) -> Vec<(String, String)> {
    fn dec(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                    match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                        Some(b) => {
                            out.push(b);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (dec(k), dec(v)),
            None => (dec(p), String::new()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_bad_base_url_is_named() {
        assert!(StripeApi::new("ftp://x", "sk").is_err());
        assert!(StripeApi::new("https://api.stripe.com/v1", "sk").is_err());
        assert!(StripeApi::new("http://127.0.0.1:x", "sk").is_err());
        assert!(StripeApi::new("http://127.0.0.1:1", " ").is_err());
        let api = StripeApi::new("http://127.0.0.1:9000/", "sk_test").unwrap();
        assert_eq!(api.base_url(), "http://127.0.0.1:9000");
    }

    #[test]
    fn answers_read_as_the_provider_documents_them() {
        let refund = serde_json::json!({"object": "refund", "id": "re_1", "status": "pending",
            "metadata": {"idempotency_key": "refund-k-1"}});
        assert_eq!(
            answer(200, &[], Some(refund)),
            ProviderAnswer::Refund {
                id: "re_1".into(),
                status: "pending".into(),
                failure_reason: None,
                idempotency_key: Some("refund-k-1".into())
            }
        );
        assert_eq!(
            answer(429, &[("Retry-After".into(), "2".into())], None),
            ProviderAnswer::RateLimited {
                retry_after: Some(Duration::from_secs(2))
            }
        );
        let refused = serde_json::json!({"error": {"type": "invalid_request_error",
            "code": "charge_already_refunded", "message": "already refunded"}});
        assert!(matches!(answer(400, &[], Some(refused)),
            ProviderAnswer::Refused { http_status: 400, code, .. } if code == "charge_already_refunded"));
        assert!(matches!(
            answer(503, &[], None),
            ProviderAnswer::Unavailable(_)
        ));
    }

    proptest! {
        #[test]
        fn forms_round_trip(pairs in proptest::collection::vec(("[ -~]{0,12}", "\\PC{0,12}"), 0..6)) {
            let pairs: Vec<(String, String)> = pairs.into_iter().filter(|(k, _)| !k.is_empty()).collect();
            let borrowed: Vec<(&str, String)> = pairs.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
            prop_assert_eq!(form_decode(&form_encode(&borrowed)), pairs);
        }
    }
}
