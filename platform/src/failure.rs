//! A failure that keeps its cause: the text a person reads (the error and every cause under
//! it, on one line) and the error itself, for code that looks at what went wrong (a Postgres
//! code, a lost connection). It reads as its text wherever a `&str` does.

use std::fmt;
use std::ops::Deref;

type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug)]
pub struct Failure {
    text: String,
    cause: Option<Cause>,
}

impl Failure {
    /// A failure with no error under it: a broken invariant, said in words.
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            cause: None,
        }
    }

    /// The error, kept, with its whole chain as the text.
    pub fn of(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self {
            text: crate::error_chain(&e),
            cause: Some(Box::new(e)),
        }
    }

    /// The error, kept, after what was being done: `"{context}: {error chain}"`.
    pub fn during(context: &str, e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self {
            text: format!("{context}: {}", crate::error_chain(&e)),
            cause: Some(Box::new(e)),
        }
    }

    /// The error under this one, when there is one.
    pub fn cause(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.cause.as_deref()
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|c| c as &(dyn std::error::Error + 'static))
    }
}

impl Deref for Failure {
    type Target = str;

    fn deref(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_reads_as_its_chain_and_keeps_its_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let f = Failure::during("reading the books", io);
        assert_eq!(f.to_string(), "reading the books: refused");
        assert!(f.contains("books"));
        let cause = f.cause().and_then(|c| c.downcast_ref::<std::io::Error>());
        assert_eq!(
            cause.map(std::io::Error::kind),
            Some(std::io::ErrorKind::ConnectionRefused)
        );
        assert!(Failure::new("no seed").cause().is_none());
    }
}
