//! `allot verify`: checks a license file offline against a JWK Set (a file, or the server's
//! `/v1/keys`) and prints its claims. The check is the ledger crate's pure verifier: signature
//! (Ed25519, strict), key id, `exp` and `nbf` against this machine's clock.

use std::path::PathBuf;

use allot_ledger::keys::{JwkSet, verify_compact};
use base64::Engine;

use super::client::{Client, segment};

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The license file (a JWS compact serialisation, as served by /v1/users/{user}/license)
    pub file: PathBuf,
    /// A JWK Set file to verify against
    #[arg(long, conflicts_with = "url")]
    pub jwks: Option<PathBuf>,
    /// A server whose /v1/keys to verify against (default: ALLOT_URL)
    #[arg(long, env = "ALLOT_URL")]
    pub url: Option<String>,
    /// The tenant whose keys to fetch (default: the one the file names; the signature decides)
    #[arg(long)]
    pub tenant: Option<String>,
    /// Print only the claims, as JSON
    #[arg(long)]
    pub json: bool,
}

/// The tenant a file claims to be from, read before any check, only to pick its key set.
fn claimed_tenant(token: &str) -> Option<String> {
    let payload = token.trim().split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims["tenant"]["name"].as_str().map(str::to_owned)
}

pub async fn run(args: VerifyArgs) -> anyhow::Result<()> {
    let token = std::fs::read_to_string(&args.file)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", args.file.display()))?;
    let keys: JwkSet = match (&args.jwks, &args.url) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
            serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{}: not a JWK Set: {e}", path.display()))?
        }
        (None, url) => {
            let url = url.as_deref().unwrap_or("http://127.0.0.1:8080");
            let tenant = args
                .tenant
                .clone()
                .or_else(|| claimed_tenant(&token))
                .ok_or_else(|| anyhow::anyhow!("the file names no tenant: pass --tenant"))?;
            Client::new(url, None)
                .get(&format!("/v1/keys?tenant={}", segment(&tenant)))
                .await?
        }
    };
    let claims = verify_compact(&token, &keys, time::OffsetDateTime::now_utc())
        .map_err(|e| anyhow::anyhow!("{}: invalid license file: {e}", args.file.display()))?;
    if let Some(tenant) = &args.tenant
        && claims["tenant"]["name"].as_str() != Some(tenant.as_str())
    {
        anyhow::bail!(
            "{}: signed for tenant {}, not {tenant:?}",
            args.file.display(),
            claims["tenant"]["name"]
        );
    }
    if !args.json {
        let exp = claims["exp"]
            .as_i64()
            .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| "never".into());
        println!(
            "valid license of tenant {} for {}, until {exp}",
            claims["tenant"]["name"], claims["user"]["login"]
        );
    }
    println!("{}", serde_json::to_string_pretty(&claims)?);
    Ok(())
}
