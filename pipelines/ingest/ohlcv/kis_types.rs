//! The KIS daily-chart API's contract as the client sees it: endpoints, TR id and message codes,
//! the client's settings, its errors, and the rows and statistics it returns.

use std::path::PathBuf;
use std::time::Duration;

pub const DAILY_CHART_PATH: &str =
    "/uapi/domestic-stock/v1/quotations/inquire-daily-itemchartprice";
pub const TOKEN_PATH: &str = "/oauth2/tokenP";
pub const TR_DAILY_CHART: &str = "FHKST03010100";
pub(super) const RATE_LIMITED: &str = "EGW00201";
pub(super) const TOKEN_EXPIRED: &str = "EGW00123";

#[derive(Debug, thiserror::Error)]
pub enum KisError {
    #[error("environment variable {0} is not set (KIS credentials come from the environment)")]
    MissingCredential(String),
    #[error("KIS HTTP {status}: {msg}")]
    Http { status: u16, msg: String },
    #[error("KIS API error {msg_cd}: {msg}")]
    Api { msg_cd: String, msg: String },
    #[error("KIS rate limit (EGW00201) still hit after {attempts} attempts")]
    RateLimited { attempts: u32 },
    #[error("KIS transport: {0}")]
    Transport(String),
    #[error("KIS response: {0}")]
    Decode(String),
}

impl KisError {
    /// Worth retrying later (the task's retry policy).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::RateLimited { .. } | Self::Transport(_) => true,
            Self::Http { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

#[derive(Clone)]
pub struct KisConfig {
    pub base_url: String,
    pub app_key_env: String,
    pub app_secret_env: String,
    pub token_cache: Option<PathBuf>,
    pub adjusted: bool,
    pub page_size: usize,
    pub max_retries: u32,
    pub backoff_base: Duration,
    pub timeout: Duration,
}

impl Default for KisConfig {
    fn default() -> Self {
        Self {
            base_url: "https://openapi.koreainvestment.com:9443".into(),
            app_key_env: "KIS_APP_KEY".into(),
            app_secret_env: "KIS_APP_SECRET".into(),
            token_cache: None,
            adjusted: true,
            page_size: 100,
            max_retries: 5,
            backoff_base: Duration::from_millis(500),
            timeout: Duration::from_secs(20),
        }
    }
}

impl std::fmt::Debug for KisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KisConfig")
            .field("base_url", &self.base_url)
            .field("app_key_env", &self.app_key_env)
            .field("app_secret_env", &self.app_secret_env)
            .field("token_cache", &self.token_cache)
            .field("adjusted", &self.adjusted)
            .finish_non_exhaustive()
    }
}

/// One row of `output2`, as text (validated by the caller).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KisRow {
    pub date: String,
    pub open: String,
    pub high: String,
    pub low: String,
    pub close: String,
    pub volume: String,
    pub raw: String,
}

/// What the client did, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KisStats {
    pub http_calls: u32,
    pub token_issues: u32,
    pub retries: u32,
    pub pages: u32,
}
