//! Request bodies and their fields, the same way at both HTTP edges: a body read up to a limit
//! whatever its framing, JSON parsed with the path of a bad field (`ranges[1].end_number`),
//! and the text every stored string must be.

use bytes::Buf;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::problem::Problem;

/// Reads the body up to `limit_bytes`, whatever the framing (Content-Length or chunked).
pub async fn read_body(
    mut stream: impl futures::Stream<Item = Result<impl Buf, warp::Error>> + Unpin,
    limit_bytes: usize,
) -> Result<Vec<u8>, Problem> {
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let mut chunk =
            chunk.map_err(|e| Problem::malformed(format!("could not read the body: {e}")))?;
        if body.len() + chunk.remaining() > limit_bytes {
            return Err(Problem::too_large(limit_bytes));
        }
        while chunk.has_remaining() {
            let bytes = chunk.chunk();
            body.extend_from_slice(bytes);
            let n = bytes.len();
            chunk.advance(n);
        }
    }
    Ok(body)
}

/// The request body as `T`; a bad field is named by its path (`ranges[1].end_number`). Every
/// string in it, keys included and at any depth, must be text the platform can store (no NUL,
/// no control characters but tab and line breaks, [`STRING_CHARS_MAX`] at most): otherwise
/// 422 naming the string's path, and nothing is written.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    let value: Value = parse_unchecked(body)?;
    if let Some((path, e)) = unstorable(&value, &mut String::new()) {
        return Err(Problem::invalid(&path, e.to_string()));
    }
    serde_path_to_error::deserialize(value)
        .map_err(|e| field_problem(e.path().to_string(), e.into_inner()))
}

/// The longest string a request body may carry anywhere; fields have tighter limits of their own.
pub const STRING_CHARS_MAX: usize = 10_000;

/// The first string of `value` that cannot be stored, with its path.
fn unstorable(value: &Value, path: &mut String) -> Option<(String, schemas::text::TextError)> {
    match value {
        Value::String(s) => schemas::text::storable(s, STRING_CHARS_MAX).err().map(|e| {
            (
                if path.is_empty() {
                    ".".to_owned()
                } else {
                    path.clone()
                },
                e,
            )
        }),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            let len = path.len();
            path.push_str(&format!("[{i}]"));
            let found = unstorable(item, path);
            path.truncate(len);
            found
        }),
        Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            let len = path.len();
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(key);
            let found = schemas::text::storable(key, 200)
                .err()
                .map(|e| (path.clone(), e))
                .or_else(|| unstorable(item, path));
            path.truncate(len);
            found
        }),
        _ => None,
    }
}

/// The body as `T`, its strings not looked at: for a batch whose records are judged one by
/// one, so that one bad record does not refuse the others (RSU uploads).
pub fn parse_unchecked<T: DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Problem::malformed("a JSON body is required"));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de)
        .map_err(|e| field_problem(e.path().to_string(), e.into_inner()))
}

fn field_problem(path: String, inner: serde_json::Error) -> Problem {
    if inner.is_syntax() || inner.is_eof() {
        Problem::malformed(format!("not valid JSON: {inner}"))
    } else if path == "." {
        Problem::malformed(inner.to_string())
    } else {
        Problem::invalid(&path, inner.to_string())
    }
}

/// One line of text that must be present, trimmed, at most `max` characters, with no control
/// characters or line breaks.
pub fn text(field: &str, value: &str, max: usize) -> Result<String, Problem> {
    let v = value.trim();
    schemas::text::line(v, max).map_err(|e| Problem::invalid(field, e.to_string()))?;
    Ok(v.to_owned())
}

pub fn opt_text(
    field: &str,
    value: &Option<String>,
    max: usize,
) -> Result<Option<String>, Problem> {
    value.as_deref().map(|v| text(field, v, max)).transpose()
}

/// Free text (a description, a reason): line breaks kept, other control characters refused,
/// at most `max` characters; `None` when absent.
pub fn opt_prose(
    field: &str,
    value: &Option<String>,
    max: usize,
) -> Result<Option<String>, Problem> {
    value
        .as_deref()
        .map(|v| {
            let v = v.trim();
            schemas::text::prose(v, max)
                .map(|()| v.to_owned())
                .map_err(|e| Problem::invalid(field, e.to_string()))
        })
        .transpose()
}
