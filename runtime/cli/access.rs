//! How every command reaches a node ([`Connect`]: `--admin`, `--certs`, `--token-file`,
//! `--plaintext`), and the `tokens` and `audit` commands.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use crate::client::{Access, Client, ClientError};
use crate::credentials::{load_token_file, load_token_verifier, principal_of, CredentialFiles};
use crate::grid::schedule::{civil_from_days, days_from_civil};

/// The node a command talks to and the credential it acts with.
#[derive(Debug, Clone, Args)]
pub struct Connect {
    /// A node's admin address (any node), `HOST:PORT`: an IP address, or a DNS name (resolved now;
    /// the node's certificate is checked for the name).
    #[arg(long)]
    pub admin: crate::mesh::PeerAddr,
    /// Credentials directory: its ca.pem verifies the node, and its operator certificate is the
    /// default credential.
    #[arg(long, env = "GRIDKEEPER_CERTS")]
    pub certs: Option<PathBuf>,
    /// Act with this token (from `certs --token`) instead of the operator certificate.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Speak plain HTTP, to a node started with --admin-plaintext.
    #[arg(long)]
    pub plaintext: bool,
}

fn transport(error: impl std::fmt::Display) -> ClientError {
    ClientError::Transport(error.to_string())
}

impl Connect {
    /// The access these flags describe.
    ///
    /// # Errors
    /// [`ClientError::Transport`] naming the missing flag or unreadable file.
    pub fn access(&self) -> Result<Access, ClientError> {
        let token = self.token_file.as_deref().map(load_token_file).transpose().map_err(transport)?;
        if self.plaintext {
            // Over plain HTTP only a token proves who the client is: the given one, or the
            // directory's legacy admin token.
            let token = match (token, &self.certs) {
                (Some(token), _) => Some(token),
                (None, Some(certs)) => crate::credentials::load_admin_token_if_any(certs).map_err(transport)?,
                (None, None) => None,
            };
            let access = Access::plaintext();
            return Ok(match token {
                Some(token) => access.with_token(token),
                None => access,
            });
        }
        let certs = self.certs.as_deref().ok_or_else(|| {
            transport("--certs DIR is needed (or GRIDKEEPER_CERTS): its ca.pem verifies the node's HTTPS certificate")
        })?;
        match token {
            Some(token) => Ok(Access::ca_only(certs)?.with_token(token)),
            None => Access::from_certs(certs),
        }
    }

    /// The node's socket address (its name resolved, the first address it gives) and the access
    /// that reaches it (checking the certificate for the name, if one was given).
    ///
    /// # Errors
    /// [`ClientError::Transport`] if the name does not resolve or the access cannot be set up.
    pub async fn resolve(&self) -> Result<(SocketAddr, Access), ClientError> {
        let access = self.access()?;
        if let Some(addr) = self.admin.socket_addr() {
            return Ok((addr, access));
        }
        let name = self.admin.name().unwrap_or_default();
        let lookup = tokio::net::lookup_host((name, self.admin.port));
        let found = tokio::time::timeout(std::time::Duration::from_secs(10), lookup)
            .await
            .map_err(|_| transport(format!("resolving {} timed out", self.admin)))?
            .map_err(|error| transport(format!("resolving {}: {error}", self.admin)))?
            .next()
            .ok_or_else(|| transport(format!("{} resolves to no address", self.admin)))?;
        let access = if access.is_tls() { access.with_server_name(name)? } else { access };
        Ok((found, access))
    }

    /// A client for the node.
    ///
    /// # Errors
    /// [`ClientError`] if the access cannot be set up or the node reached.
    pub async fn client(&self) -> Result<Client, ClientError> {
        let (admin, access) = self.resolve().await?;
        Client::connect(admin, access).await
    }
}

/// `gridkeeper tokens`.
#[derive(Debug, Args)]
pub struct TokensArgs {
    #[command(subcommand)]
    command: TokensCommand,
}

#[derive(Debug, Subcommand)]
enum TokensCommand {
    /// Revoke every token and client certificate named NAME, on every node, for good.
    Revoke {
        /// The name given to `certs --token` or `certs --client`.
        name: String,
        #[command(flatten)]
        node: Connect,
    },
    /// List the tokens and client certificates issued into --certs, and every revoked name.
    List {
        #[command(flatten)]
        node: Connect,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

/// One issued or revoked credential, as `tokens list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CredentialListing {
    /// The name.
    pub name: String,
    /// `token` or `certificate`; empty for a revoked name with no file here.
    pub kind: String,
    /// Its role, if a file here says.
    pub role: Option<String>,
    /// When it was issued (tokens), Unix milliseconds.
    pub issued_ms: Option<u64>,
    /// When it was revoked, Unix milliseconds.
    pub revoked_ms: Option<u64>,
}

/// What `certs` issued into `dir`: tokens (`token-NAME`, read with the token key's public half) and
/// client certificates (`client-NAME.pem`).
fn issued(dir: &Path) -> Result<Vec<CredentialListing>, ClientError> {
    let verifier = load_token_verifier(dir).ok();
    let entries = std::fs::read_dir(dir).map_err(|error| transport(format!("{}: {error}", dir.display())))?;
    let mut listed = Vec::new();
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        if let Some(name) = file.strip_prefix("token-") {
            let claims = load_token_file(&entry.path())
                .ok()
                .and_then(|token| verifier.as_ref().and_then(|verifier| verifier.verify(&token).ok()));
            listed.push(CredentialListing {
                name: name.to_string(),
                kind: "token".into(),
                role: claims.as_ref().map(|claims| claims.role.name().to_string()),
                issued_ms: claims.map(|claims| claims.iat_ms),
                revoked_ms: None,
            });
        } else if let Some(name) = file.strip_prefix("client-").and_then(|rest| rest.strip_suffix(".pem")) {
            let role = std::fs::read_to_string(entry.path())
                .ok()
                .and_then(|pem| crate::credentials::store::parse_cert(&pem, &file).ok())
                .and_then(|der| principal_of(der.as_ref()))
                .map(|principal| principal.role.name().to_string());
            listed.push(CredentialListing {
                name: name.to_string(),
                kind: "certificate".into(),
                role,
                issued_ms: None,
                revoked_ms: None,
            });
        }
    }
    Ok(listed)
}

/// Runs `gridkeeper tokens`.
///
/// # Errors
/// [`ClientError`]; a refused call names why.
pub async fn tokens(args: TokensArgs) -> Result<(), ClientError> {
    match args.command {
        TokensCommand::Revoke { name, node } => {
            let revocation = node.client().await?.revoke(&name).await?;
            println!("revoked {} (every node refuses it once it has applied the revocation)", revocation.name);
            Ok(())
        }
        TokensCommand::List { node, json } => {
            let revoked = node.client().await?.revoked().await?;
            let mut listed = match &node.certs {
                Some(dir) if CredentialFiles::new(dir).dir().is_dir() => issued(dir)?,
                _ => Vec::new(),
            };
            for revocation in revoked {
                let mut found = false;
                for entry in listed.iter_mut().filter(|entry| entry.name == revocation.name) {
                    entry.revoked_ms = Some(revocation.ts_ms);
                    found = true;
                }
                if !found {
                    listed.push(CredentialListing {
                        name: revocation.name,
                        kind: String::new(),
                        role: None,
                        issued_ms: None,
                        revoked_ms: Some(revocation.ts_ms),
                    });
                }
            }
            listed.sort_by(|a, b| (&a.name, &a.kind).cmp(&(&b.name, &b.kind)));
            if json {
                println!("{}", serde_json::to_string(&listed).map_err(transport)?);
                return Ok(());
            }
            println!("{:<24} {:<12} {:<10} {:<24} REVOKED", "NAME", "KIND", "ROLE", "ISSUED");
            for entry in &listed {
                let time = |ms: Option<u64>| ms.map_or_else(|| "-".to_string(), format_time);
                println!(
                    "{:<24} {:<12} {:<10} {:<24} {}",
                    entry.name,
                    if entry.kind.is_empty() { "-" } else { &entry.kind },
                    entry.role.as_deref().unwrap_or("-"),
                    time(entry.issued_ms),
                    entry.revoked_ms.map_or_else(|| "no".to_string(), format_time),
                );
            }
            Ok(())
        }
    }
}

/// `gridkeeper audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    node: Connect,
    /// Only records since then: a duration back from now (`90s`, `15m`, `1h`, `7d`) or an RFC 3339
    /// time (`2026-11-30T18:00:00Z`). Default: everything kept.
    #[arg(long)]
    since: Option<String>,
    /// At most this many records, the newest (default and most 10000).
    #[arg(long)]
    limit: Option<usize>,
    /// One JSON object a line, as kept.
    #[arg(long)]
    json: bool,
}

/// Runs `gridkeeper audit`.
///
/// # Errors
/// [`ClientError`]; a bad `--since` is a transport error naming it.
pub async fn audit(args: AuditArgs) -> Result<(), ClientError> {
    let since_ms = match &args.since {
        Some(text) => parse_since(text, crate::clock::unix_millis()).map_err(transport)?,
        None => 0,
    };
    let records = args.node.client().await?.audit(since_ms, args.limit).await?;
    for record in records {
        if args.json {
            println!("{}", serde_json::to_string(&record).map_err(transport)?);
        } else {
            println!(
                "{} {} ({}) from {} {} {} -> {}",
                format_time(record.ts_ms),
                record.who,
                record.role,
                record.from,
                record.action,
                if record.target.is_empty() { "-" } else { &record.target },
                record.outcome
            );
        }
    }
    Ok(())
}

/// A `--since` value as Unix milliseconds: a duration back from `now_ms`, or an RFC 3339 time.
///
/// # Errors
/// A message naming the accepted forms.
pub fn parse_since(text: &str, now_ms: u64) -> Result<u64, String> {
    let bad = || format!("--since {text:?}: give a duration such as 90s, 15m, 1h, 7d, or an RFC 3339 time");
    let text = text.trim();
    let unit_at = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    if unit_at > 0 && !text.contains('-') {
        let amount: u64 = text[..unit_at].parse().map_err(|_| bad())?;
        let unit_ms = match &text[unit_at..] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        return Ok(now_ms.saturating_sub(amount.saturating_mul(unit_ms)));
    }
    parse_rfc3339(text).ok_or_else(bad)
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` as Unix milliseconds.
fn parse_rfc3339(text: &str) -> Option<u64> {
    let number = |part: &str| -> Option<i64> {
        (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit())).then(|| part.parse().ok()).flatten()
    };
    let (date, rest) = text.split_once(['T', 't', ' '])?;
    let mut fields = date.split('-');
    let (year, month, day) = (number(fields.next()?)?, number(fields.next()?)?, number(fields.next()?)?);
    if fields.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let zone_at = rest.find(['Z', 'z', '+', '-'])?;
    let (clock, zone) = rest.split_at(zone_at);
    let (clock, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut fields = clock.split(':');
    let (hour, minute, second) = (number(fields.next()?)?, number(fields.next()?)?, number(fields.next()?)?);
    if fields.next().is_some() || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let millis = if fraction.is_empty() { 0 } else { number(&format!("{fraction:0<3}")[..3])? };
    let offset_minutes = match zone {
        "Z" | "z" => 0,
        _ => {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let (hours, minutes) = zone[1..].split_once(':')?;
            sign * (number(hours)? * 60 + number(minutes)?)
        }
    };
    let days = days_from_civil(year, u32::try_from(month).ok()?, u32::try_from(day).ok()?);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    u64::try_from(seconds * 1_000 + millis).ok()
}

/// Unix milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_time(ms: u64) -> String {
    let (days, rest) = ((ms / 86_400_000) as i64, ms % 86_400_000);
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second, millis) = (rest / 3_600_000, rest / 60_000 % 60, rest / 1_000 % 60, rest % 1_000);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{millis:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_durations_and_rfc3339_times() {
        let now = 1_796_000_000_000;
        assert_eq!(parse_since("90s", now), Ok(now - 90_000));
        assert_eq!(parse_since("1h", now), Ok(now - 3_600_000));
        assert_eq!(parse_since("7d", now), Ok(now - 7 * 86_400_000));
        assert_eq!(parse_since("1970-01-01T00:00:00Z", now), Ok(0));
        assert_eq!(parse_since("2026-11-30T18:00:00Z", now), Ok(1_796_061_600_000));
        assert_eq!(parse_since("2026-11-30T19:00:00.250+01:00", now), Ok(1_796_061_600_250));
        for bad in ["", "1y", "h", "2026-13-01T00:00:00Z", "2026-11-30", "2026-11-30T25:00:00Z", "yesterday"] {
            assert!(parse_since(bad, now).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn times_format_and_parse_back() {
        for ms in [0, 1_796_061_600_250, 951_782_400_000, 4_102_444_800_000] {
            assert_eq!(parse_since(&format_time(ms), 0), Ok(ms), "{}", format_time(ms));
        }
        assert_eq!(format_time(1_796_061_600_250), "2026-11-30T18:00:00.250Z");
    }
}
