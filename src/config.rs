//! Configuration: a TOML file (every key optional) with environment overrides on top.
//! A bad key or value stops the start with an error naming it; nothing here panics.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::store::Durability;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub ingress: IngressConfig,
    pub delivery: DeliveryConfig,
    pub store: StoreConfig,
    pub retention: RetentionConfig,
    pub engine: EngineConfig,
    pub telemetry: TelemetryConfig,
    pub log: LogConfig,
    /// Filled from the environment only: secrets do not belong in a config file.
    #[serde(skip)]
    pub auth: AuthConfig,
    /// The file this was read from, watched for `[engine] paused`.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: String,
    pub data_dir: PathBuf,
    /// Base of the source URLs shown to users; defaults to `http://<listen>`.
    pub public_url: Option<String>,
    /// How long shutdown waits for attempts in flight.
    #[serde(deserialize_with = "duration")]
    pub shutdown_grace: Duration,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./data"),
            public_url: None,
            shutdown_grace: Duration::from_secs(10),
            workers: 0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngressConfig {
    pub max_body_bytes: usize,
    /// Requests per second each team's source URLs accept (a second's worth may come at
    /// once); over it, 429 with `Retry-After` and nothing stored. 0: no limit.
    pub team_rate_limit: u32,
    /// How long, on average, a request over its team's limit waits for its 429 (½ to 1½ of
    /// it). A client flooding from a few connections sends its next request only once
    /// answered, so this slows it to a few requests per connection per second, and leaves
    /// the cores to the other teams.
    #[serde(deserialize_with = "duration")]
    pub rate_limited_delay: Duration,
    /// The longest a request's body may take to arrive; slower is cut off with 408.
    #[serde(deserialize_with = "duration")]
    pub body_timeout: Duration,
}

impl Default for IngressConfig {
    fn default() -> Self {
        IngressConfig {
            max_body_bytes: 1024 * 1024,
            team_rate_limit: 0,
            rate_limited_delay: Duration::from_millis(250),
            body_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    #[serde(deserialize_with = "duration")]
    pub max_event_age: Duration,
    pub block_private_networks: bool,
    /// Waiting events each destination keeps in memory (and as many scheduled retries); the
    /// rest of a backlog waits on disk and is read in order as the window empties.
    pub queue_window: usize,
}

impl Config {
    /// Where deliveries and alerts may connect.
    pub fn address_policy(&self) -> crate::domain::address_policy::AddressPolicy {
        crate::domain::address_policy::AddressPolicy {
            block_private_networks: self.delivery.block_private_networks,
        }
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            max_event_age: Duration::from_secs(72 * 3600),
            block_private_networks: false,
            queue_window: 2048,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub durability: Durability,
    /// How long the writer waits for more commits to join a group before flushing.
    #[serde(deserialize_with = "duration")]
    pub group_commit_linger: Duration,
    /// Bytes of sled's page cache: recently written and read records stay in memory.
    pub cache_bytes: u64,
    /// Request bodies are appended to segment files this large; retention deletes a segment
    /// once nothing in it is kept.
    pub body_segment_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            durability: Durability::Fsync,
            group_commit_linger: Duration::ZERO,
            cache_bytes: crate::store::DEFAULT_CACHE_BYTES,
            body_segment_bytes: 64 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Finished requests (every event delivered, cancelled or dead-lettered) are purged, with
    /// their events, attempts and bodies, this many days after they and their events last
    /// changed. Fractions are allowed; 0 keeps everything.
    pub days: f64,
    /// How often the background sweep looks for what to purge.
    #[serde(deserialize_with = "duration")]
    pub sweep_interval: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            days: 7.0,
            sweep_interval: Duration::from_secs(600),
        }
    }
}

impl RetentionConfig {
    /// The retention period, or `None` to keep everything.
    pub fn max_age(&self) -> Option<Duration> {
        (self.days > 0.0 && self.days.is_finite())
            .then(|| Duration::from_secs_f64(self.days * 86_400.0))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    pub paused: bool,
    #[serde(deserialize_with = "duration")]
    pub config_poll_interval: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            paused: false,
            config_poll_interval: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Tracing filter, e.g. `info` or `fasthook=debug`.
    pub log: String,
    /// Label metrics with connection/destination/source ids; turn off for very many.
    pub per_id_labels: bool,
}

/// How log lines are written (to stderr).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Text,
    /// One JSON object per line, span fields included, for log collectors.
    Json,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            log: "info".into(),
            per_id_labels: true,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    pub team_id: Option<String>,
    pub api_key: Option<String>,
    pub admin_key: Option<String>,
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "`{text}` is not a duration like \"1s\" or \"72h\": {e}"
        ))
    })
}

impl Config {
    /// Reads the file (when given) and applies the environment on top.
    pub fn load(
        path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Config::parse(&text).map_err(|message| ConfigError::Parse {
                    path: path.to_owned(),
                    message,
                })?
            }
            None => Config::default(),
        };
        config.source = path.map(Path::to_owned);
        if let Some(v) = env("FASTHOOK_LISTEN") {
            config.server.listen = v;
        }
        if let Some(v) = env("FASTHOOK_DATA_DIR") {
            config.server.data_dir = PathBuf::from(v);
        }
        if let Some(v) = env("FASTHOOK_PUBLIC_URL") {
            config.server.public_url = Some(v);
        }
        if let Some(v) = env("FASTHOOK_LOG") {
            config.telemetry.log = v;
        }
        config.auth = AuthConfig {
            team_id: env("FASTHOOK_TEAM_ID").filter(|v| !v.is_empty()),
            api_key: env("FASTHOOK_API_KEY").filter(|v| !v.is_empty()),
            admin_key: env("FASTHOOK_ADMIN_KEY").filter(|v| !v.is_empty()),
        };
        config.validate()?;
        Ok(config)
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        if self.ingress.max_body_bytes == 0 {
            return Err(ConfigError::Invalid {
                key: "ingress.max_body_bytes",
                message: "must be at least 1".into(),
            });
        }
        if self.ingress.body_timeout.is_zero() {
            return Err(ConfigError::Invalid {
                key: "ingress.body_timeout",
                message: "must be above 0".into(),
            });
        }
        if self.store.body_segment_bytes < 4096 {
            return Err(ConfigError::Invalid {
                key: "store.body_segment_bytes",
                message: "must be at least 4096".into(),
            });
        }
        if !(self.retention.days >= 0.0 && self.retention.days <= 36_500.0) {
            return Err(ConfigError::Invalid {
                key: "retention.days",
                message: "must be from 0 (keep everything) to 36500".into(),
            });
        }
        if self.retention.sweep_interval.is_zero() {
            return Err(ConfigError::Invalid {
                key: "retention.sweep_interval",
                message: "must be above 0".into(),
            });
        }
        if self.engine.config_poll_interval.is_zero() {
            return Err(ConfigError::Invalid {
                key: "engine.config_poll_interval",
                message: "must be above 0".into(),
            });
        }
        if let Some(url) = &self.server.public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::Invalid {
                    key: "server.public_url (FASTHOOK_PUBLIC_URL)",
                    message: "must be an http or https URL".into(),
                });
            }
        }
        if self.auth.team_id.is_some() != self.auth.api_key.is_some() {
            return Err(ConfigError::Invalid {
                key: "FASTHOOK_TEAM_ID / FASTHOOK_API_KEY",
                message: "set both or neither".into(),
            });
        }
        if let Some(team) = &self.auth.team_id {
            crate::domain::TeamId::parse_loose(team).map_err(|e| ConfigError::Invalid {
                key: "FASTHOOK_TEAM_ID",
                message: e.to_string(),
            })?;
        }
        if let Some(key) = &self.auth.api_key {
            if !key.starts_with("fhp_") || key.len() < 20 {
                return Err(ConfigError::Invalid {
                    key: "FASTHOOK_API_KEY",
                    message: "must start with `fhp_` and be at least 20 characters".into(),
                });
            }
        }
        Ok(())
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server
            .listen
            .parse()
            .map_err(|e| ConfigError::Invalid {
                key: "server.listen (FASTHOOK_LISTEN)",
                message: format!(
                    "`{}` is not an address like 127.0.0.1:8080: {e}",
                    self.server.listen
                ),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn the_shipped_config_file_parses_and_equals_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/fasthook.toml");
        let c = Config::load(Some(&path), no_env).unwrap();
        let d = Config::default();
        assert_eq!(c.server.listen, d.server.listen);
        assert_eq!(c.ingress.max_body_bytes, d.ingress.max_body_bytes);
        assert_eq!(c.delivery.max_event_age, d.delivery.max_event_age);
        assert_eq!(c.store.durability, d.store.durability);
        assert_eq!(c.engine.config_poll_interval, d.engine.config_poll_interval);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let e = Config::parse("[ingress]\nmax_body_bites = 5\n").unwrap_err();
        assert!(e.contains("max_body_bites"), "{e}");
        let e = Config::parse("[delivery]\nmax_event_age = \"soon\"\n").unwrap_err();
        assert!(e.contains("max_event_age"), "{e}");
        let e = Config::parse("[store]\ndurability = \"maybe\"\n").unwrap_err();
        assert!(e.contains("durability"), "{e}");
    }

    #[test]
    fn the_environment_beats_the_file() {
        let env = |k: &str| match k {
            "FASTHOOK_LISTEN" => Some("127.0.0.1:0".to_string()),
            "FASTHOOK_DATA_DIR" => Some("/tmp/x".to_string()),
            _ => None,
        };
        let c = Config::load(None, env).unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:0");
        assert_eq!(c.server.data_dir, PathBuf::from("/tmp/x"));
        let bad = |k: &str| (k == "FASTHOOK_LISTEN").then(|| "nowhere".to_string());
        let e = Config::load(None, bad).unwrap_err().to_string();
        assert!(e.contains("FASTHOOK_LISTEN"), "{e}");
        let half = |k: &str| (k == "FASTHOOK_TEAM_ID").then(|| "tm_x".to_string());
        assert!(Config::load(None, half).is_err());
    }
}
