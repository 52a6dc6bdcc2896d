//! How every command reaches a node ([`Connect`]: `--admin` or `GRIDKEEPER_ADMIN`, `--certs` or
//! `GRIDKEEPER_CERTS`, `--token-file`, `--plaintext`), and the `tokens` and `audit` commands.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::flags::{parse_since, Since};
use super::output::{json_line, rfc3339, Table};
use crate::client::{Access, Client, ClientError};
use crate::credentials::{load_token_file, load_token_verifier, principal_of, CredentialFiles};

/// The node a command talks to and the credential it acts with.
#[derive(Debug, Clone, Args)]
pub struct Connect {
    /// A node's admin address (any node), `HOST:PORT`: an IP address, or a DNS name (resolved now;
    /// the node's certificate is checked for the name).
    #[arg(long, env = "GRIDKEEPER_ADMIN")]
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
        /// Print the revocation (`name`, `ts_ms`, `by`) as JSON.
        #[arg(long)]
        json: bool,
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
        TokensCommand::Revoke { name, node, json } => {
            let revocation = node.client().await?.revoke(&name).await?;
            if json {
                println!("{}", json_line(&revocation).map_err(transport)?);
                return Ok(());
            }
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
            print!("{}", credentials_table(&listed));
            Ok(())
        }
    }
}

/// `tokens list` for people: one row per name, times in RFC 3339.
fn credentials_table(listed: &[CredentialListing]) -> String {
    let mut table = Table::new(["NAME", "KIND", "ROLE", "ISSUED", "REVOKED"]);
    for entry in listed {
        table.row([
            entry.name.clone(),
            if entry.kind.is_empty() { "-".to_string() } else { entry.kind.clone() },
            entry.role.clone().unwrap_or_else(|| "-".into()),
            entry.issued_ms.map_or_else(|| "-".to_string(), rfc3339),
            entry.revoked_ms.map_or_else(|| "no".to_string(), rfc3339),
        ]);
    }
    table.render()
}

/// `gridkeeper audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    node: Connect,
    /// Only records since then: a duration back from now (`90s`, `15m`, `1h30m`, `7d`) or an RFC 3339
    /// time (`2026-11-30T18:00:00Z`). Default: everything kept.
    #[arg(long, value_parser = parse_since)]
    since: Option<Since>,
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
/// [`ClientError`].
pub async fn audit(args: AuditArgs) -> Result<(), ClientError> {
    let since_ms = args.since.map_or(0, |since| since.unix_ms(crate::clock::unix_millis()));
    let records = args.node.client().await?.audit(since_ms, args.limit).await?;
    for record in records {
        if args.json {
            println!("{}", serde_json::to_string(&record).map_err(transport)?);
        } else {
            println!(
                "{} {} ({}) from {} {} {} -> {}",
                rfc3339(record.ts_ms),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_credentials_table_shows_times_and_dashes() {
        let listed = [
            CredentialListing {
                name: "ci".into(),
                kind: "token".into(),
                role: Some("reader".into()),
                issued_ms: Some(1_796_061_600_250),
                revoked_ms: None,
            },
            CredentialListing {
                name: "gone".into(),
                kind: String::new(),
                role: None,
                issued_ms: None,
                revoked_ms: Some(0),
            },
        ];
        assert_eq!(
            credentials_table(&listed),
            "NAME  KIND   ROLE    ISSUED                    REVOKED\n\
             ci    token  reader  2026-11-30T18:00:00.250Z  no\n\
             gone  -      -       -                         1970-01-01T00:00:00.000Z\n"
        );
    }
}
