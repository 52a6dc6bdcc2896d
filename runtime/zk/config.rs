//! The ZooKeeper front end's settings, parsed once from the node's flags or file.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use crate::limits::{
    ZK_CONNECTIONS_MAX_DEFAULT, ZK_CONNECTIONS_PER_CLIENT_MAX_DEFAULT, ZK_FRAME_BYTES_MAX_DEFAULT,
    ZK_FRAME_BYTES_MAX_MIN,
};

/// The four-letter words this front end answers.
pub const FOUR_LETTER_WORDS: [&str; 9] = ["ruok", "srvr", "stat", "mntr", "envi", "conf", "cons", "isro", "wchs"];

/// The words allowed when the setting is absent: all but `cons` and `wchs`, which list clients and
/// watches (what health checks, kazoo and `zkServer.sh status` use is in).
pub const FOUR_LETTER_WORDS_DEFAULT: [&str; 7] = ["ruok", "srvr", "stat", "mntr", "envi", "conf", "isro"];

/// Base of the default client port: node `n` listens on `127.0.0.1:(2280 + n)`, clear of a real
/// ZooKeeper's 2181-2183 on the same machine.
pub const ZK_PORT_BASE: u16 = 2280;

/// The front end's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkConfig {
    /// Where it listens.
    pub listen: SocketAddr,
    /// The four-letter words it answers.
    pub four_letter_words: BTreeSet<String>,
    /// Largest frame a client may send, header included (ZooKeeper's `jute.maxbuffer` and headers).
    pub frame_bytes_max: usize,
    /// Connections held at once.
    pub connections_max: usize,
    /// Connections held at once from one IP address.
    pub connections_per_client_max: usize,
    /// Whether createTTL is served (ZooKeeper's `extendedTypesEnabled`).
    pub extended_types: bool,
}

/// Why a front-end setting was refused; the message names the setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {setting}: {reason}")]
pub struct ZkConfigError {
    /// The setting.
    pub setting: &'static str,
    /// Why.
    pub reason: String,
}

fn invalid(setting: &'static str, reason: impl ToString) -> ZkConfigError {
    ZkConfigError { setting, reason: reason.to_string() }
}

/// The front end's settings as given; `None` takes the default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZkSettings {
    /// `HOST:PORT`, or `off`.
    pub listen: Option<String>,
    /// Comma-separated words, or `*` for all.
    pub four_letter_words: Option<String>,
    /// Frame bound in bytes.
    pub frame_bytes_max: Option<usize>,
    /// Connection bound.
    pub connections_max: Option<usize>,
    /// Per-address connection bound.
    pub connections_per_client_max: Option<usize>,
    /// Whether createTTL is served (default true).
    pub extended_types: Option<bool>,
}

impl ZkSettings {
    /// The settings for node `id`, checked; `None` if the front end is off.
    ///
    /// # Errors
    /// [`ZkConfigError`] naming the setting at fault.
    pub fn validate(&self, id: u64) -> Result<Option<ZkConfig>, ZkConfigError> {
        let listen = match self.listen.as_deref().map(str::trim) {
            Some("off") => return Ok(None),
            Some(text) => {
                text.parse().map_err(|_| invalid("zk-listen", format!("{text:?} is not HOST:PORT or off")))?
            }
            None => {
                let port = u16::try_from(id)
                    .ok()
                    .and_then(|id| ZK_PORT_BASE.checked_add(id))
                    .ok_or_else(|| invalid("zk-listen", format!("no default port for node {id}; give --zk-listen")))?;
                SocketAddr::from(([127, 0, 0, 1], port))
            }
        };
        let four_letter_words = match self.four_letter_words.as_deref() {
            None => FOUR_LETTER_WORDS_DEFAULT.iter().map(|word| word.to_string()).collect(),
            Some(list) => parse_words(list)?,
        };
        let frame_bytes_max = self.frame_bytes_max.unwrap_or(ZK_FRAME_BYTES_MAX_DEFAULT);
        let ceiling = crate::limits::ZK_OUTSTANDING_BYTES_MAX;
        if !(ZK_FRAME_BYTES_MAX_MIN..=ceiling).contains(&frame_bytes_max) {
            return Err(invalid(
                "zk-frame-bytes-max",
                format!("{frame_bytes_max} is outside {ZK_FRAME_BYTES_MAX_MIN}..={ceiling}"),
            ));
        }
        let bound = |setting, value: Option<usize>, default: usize| match value.unwrap_or(default) {
            0 => Err(invalid(setting, "0 would refuse every client")),
            value if value > 1_000_000 => Err(invalid(setting, format!("{value} is above 1000000"))),
            value => Ok(value),
        };
        Ok(Some(ZkConfig {
            listen,
            four_letter_words,
            frame_bytes_max,
            connections_max: bound("zk-connections-max", self.connections_max, ZK_CONNECTIONS_MAX_DEFAULT)?,
            connections_per_client_max: bound(
                "zk-connections-per-client-max",
                self.connections_per_client_max,
                ZK_CONNECTIONS_PER_CLIENT_MAX_DEFAULT,
            )?,
            extended_types: self.extended_types.unwrap_or(true),
        }))
    }
}

fn parse_words(list: &str) -> Result<BTreeSet<String>, ZkConfigError> {
    if list.trim() == "*" {
        return Ok(FOUR_LETTER_WORDS.iter().map(|word| word.to_string()).collect());
    }
    let mut words = BTreeSet::new();
    for word in list.split(',').map(str::trim).filter(|word| !word.is_empty()) {
        if !FOUR_LETTER_WORDS.contains(&word) {
            return Err(invalid("zk-4lw", format!("{word:?} is not one of {}, or *", FOUR_LETTER_WORDS.join(", "))));
        }
        words.insert(word.to_string());
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_node_id_and_leave_out_cons_and_wchs() {
        let config = ZkSettings::default().validate(2).expect("valid").expect("on");
        assert_eq!(config.listen, "127.0.0.1:2282".parse::<SocketAddr>().expect("addr"));
        assert!(config.four_letter_words.contains("ruok") && !config.four_letter_words.contains("cons"));
        assert_eq!(config.frame_bytes_max, ZK_FRAME_BYTES_MAX_DEFAULT);
    }

    #[test]
    fn off_turns_it_off_and_bad_values_name_their_setting() {
        let off = ZkSettings { listen: Some("off".into()), ..ZkSettings::default() };
        assert_eq!(off.validate(1), Ok(None));
        let all = ZkSettings { four_letter_words: Some("*".into()), ..ZkSettings::default() };
        assert_eq!(all.validate(1).expect("valid").expect("on").four_letter_words.len(), FOUR_LETTER_WORDS.len());
        for (settings, setting) in [
            (ZkSettings { listen: Some("nowhere".into()), ..ZkSettings::default() }, "zk-listen"),
            (ZkSettings { four_letter_words: Some("ruok,kill".into()), ..ZkSettings::default() }, "zk-4lw"),
            (ZkSettings { frame_bytes_max: Some(10), ..ZkSettings::default() }, "zk-frame-bytes-max"),
            (ZkSettings { connections_max: Some(0), ..ZkSettings::default() }, "zk-connections-max"),
        ] {
            assert_eq!(settings.validate(1).expect_err("refused").setting, setting);
        }
        assert_eq!(ZkSettings::default().validate(70_000).expect_err("no port").setting, "zk-listen");
    }
}
