//! A small client for the native API, used by the admin commands and the benchmark.

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::error::ErrorBody;

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// An error answered by the server (or the failure to reach it).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{message} ({code}, HTTP {status})")]
    Api {
        status: StatusCode,
        code: String,
        message: String,
    },
    /// No connection at all: name the address tried and how to point elsewhere.
    #[error("cannot reach the allot server at {url}: {reason} (set --url or ALLOT_URL)")]
    Unreachable { url: String, reason: String },
    #[error("talking to the server failed: {0}")]
    Transport(#[from] reqwest::Error),
}

impl ClientError {
    /// Worth asking again after a while: the server is gone, restarting, or overloaded.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Unreachable { .. } => true,
            ClientError::Transport(e) => !e.is_decode() && !e.is_builder(),
            ClientError::Api { status, .. } => {
                *status == StatusCode::SERVICE_UNAVAILABLE || *status == StatusCode::BAD_GATEWAY
            }
        }
    }

    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            ClientError::Unreachable { .. } | ClientError::Transport(_) => None,
        }
    }
}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> Self {
        Client {
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(60))
                .pool_max_idle_per_host(256)
                .build()
                .expect("HTTP client"),
            base: base.trim_end_matches('/').to_owned(),
            token,
        }
    }

    /// A failed send as the person at the terminal needs it: a refused or timed-out connection
    /// names the server's address; anything else stays as reqwest tells it.
    fn unreachable(&self, e: reqwest::Error) -> ClientError {
        if !(e.is_connect() || e.is_timeout()) {
            return ClientError::Transport(e);
        }
        // The innermost cause is the operating system's words ("Connection refused").
        let mut cause: &dyn std::error::Error = &e;
        while let Some(inner) = cause.source() {
            cause = inner;
        }
        let reason = if e.is_timeout() {
            "no answer in time".to_owned()
        } else {
            cause.to_string()
        };
        ClientError::Unreachable {
            url: self.base.clone(),
            reason,
        }
    }

    pub fn with_token(&self, token: String) -> Self {
        Client {
            token: Some(token),
            ..self.clone()
        }
    }

    pub async fn request<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T, ClientError> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(|e| self.unreachable(e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp.json().await?);
        }
        let text = resp.text().await.unwrap_or_default();
        // The API's one error shape; anything else (a proxy's page, say) is shown as it came.
        let (code, message) = match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => (body.error.code, body.error.message),
            Err(_) => ("unknown".to_owned(), text),
        };
        Err(ClientError::Api {
            status,
            code,
            message,
        })
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.request(Method::GET, path, None).await
    }

    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<T, ClientError> {
        self.request(Method::POST, path, Some(body)).await
    }

    pub async fn put<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<T, ClientError> {
        self.request(Method::PUT, path, Some(body)).await
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.request(Method::DELETE, path, None).await
    }

    /// Raw GET returning the status only (for the benchmark's baseline endpoint).
    /// POSTs a JSON body with the bearer token and answers only the status (the body is read
    /// and dropped): for dialect endpoints whose answers are not the native API's.
    pub async fn post_status(&self, path: &str, body: &Value) -> Result<StatusCode, ClientError> {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(body);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.map_err(|e| self.unreachable(e))?;
        let status = resp.status();
        let _ = resp.bytes().await?;
        Ok(status)
    }

    pub async fn get_status(&self, path: &str) -> Result<StatusCode, ClientError> {
        Ok(self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await?
            .status())
    }
}

/// Percent-encodes one path segment (so `owner/name` survives as a single segment).
pub fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(super::segment("SuperOffice/web"), "SuperOffice%2Fweb");
        assert_eq!(super::segment("a b?c"), "a%20b%3Fc");
        assert_eq!(super::segment("plain-1.2_x~"), "plain-1.2_x~");
    }
}
