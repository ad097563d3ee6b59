//! Signing keys and license settings: the statements of `AddSigningKey` and
//! `SetLicenseValidity`, each audited in its command's transaction. The sealed private key is
//! written and never echoed into the audit record.

use super::*;

pub(super) async fn add_signing_key(
    c: &mut Conn,
    env: &Env<'_>,
    kid: &str,
    public_key: &str,
    sealed_private_key: &str,
    first_only: bool,
) -> OpResult<Outcome> {
    // Lock the tenant row (a no-op update) so key changes of one tenant run one at a time and
    // the next seq is never taken twice.
    let locked = sqlx::query("UPDATE tenants SET name = name WHERE id = $1")
        .bind(env.tenant())
        .execute(&mut *c)
        .await?;
    if locked.rows_affected() == 0 {
        return Err(LedgerError::UnknownTenant(format!("#{}", env.tenant())).into());
    }
    let last: Option<i64> =
        sqlx::query_scalar("SELECT MAX(seq) FROM signing_keys WHERE tenant_id = $1")
            .bind(env.tenant())
            .fetch_one(&mut *c)
            .await?;
    if first_only && last.is_some() {
        return Ok(changed(0));
    }
    let seq = last.unwrap_or(0) + 1;
    sqlx::query(
        "INSERT INTO signing_keys (tenant_id, seq, kid, public_key, private_key, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(env.tenant())
    .bind(seq)
    .bind(kid.to_owned())
    .bind(public_key.to_owned())
    .bind(sealed_private_key.to_owned())
    .bind(env.now)
    .execute(&mut *c)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            OpError::Rule(LedgerError::AlreadyExists {
                what: "signing key",
                name: kid.to_owned(),
            })
        } else {
            e.into()
        }
    })?;
    audit(
        env,
        "signing_key.create",
        Subjects::default(),
        json!({ "after": { "kid": kid, "seq": seq, "sealed": sealed_private_key.starts_with("chacha20poly1305:") } }),
    )
    .await?;
    Ok(changed(1))
}

pub(super) async fn set_license_validity(
    c: &mut Conn,
    env: &Env<'_>,
    seconds: i64,
) -> OpResult<Outcome> {
    use crate::license::{MAX_VALIDITY_SECONDS, MIN_VALIDITY_SECONDS};
    if !(MIN_VALIDITY_SECONDS..=MAX_VALIDITY_SECONDS).contains(&seconds) {
        return Err(LedgerError::Invalid {
            field: "validity_seconds",
            reason: format!(
                "must be between {MIN_VALIDITY_SECONDS} and {MAX_VALIDITY_SECONDS}, got {seconds}"
            ),
        }
        .into());
    }
    let before: Option<i64> =
        sqlx::query_scalar("SELECT validity_seconds FROM license_settings WHERE tenant_id = $1")
            .bind(env.tenant())
            .fetch_optional(&mut *c)
            .await?;
    if before == Some(seconds) {
        return Ok(changed(0));
    }
    sqlx::query(
        "INSERT INTO license_settings (tenant_id, validity_seconds) VALUES ($1, $2) \
         ON CONFLICT (tenant_id) DO UPDATE SET validity_seconds = excluded.validity_seconds",
    )
    .bind(env.tenant())
    .bind(seconds)
    .execute(&mut *c)
    .await?;
    audit(
        env,
        "license.validity",
        Subjects::default(),
        json!({ "before": { "validity_seconds": before }, "after": { "validity_seconds": seconds } }),
    )
    .await?;
    Ok(changed(1))
}

/// The first key of a tenant being created, in the creating transaction.
pub(crate) async fn first_signing_key(
    tx: &mut Tx<'_>,
    tenant: TenantId,
    actor: &str,
    now: i64,
    backend: Backend,
    vault: &crate::keys::KeyVault,
) -> OpResult<()> {
    let c: &mut Conn = tx;
    let key = vault.generate(tenant)?;
    let ctx = Context::new(tenant, actor);
    let env = Env::new(&ctx, now, backend);
    add_signing_key(c, &env, &key.kid, &key.x, &key.sealed, true).await?;
    finish_command(c, &env).await
}
