//! The ledger's surface for offline license files: signing keys (made, rotated, listed), the
//! tenant's validity setting, and signed files for a user or a seat.

use uuid::Uuid;

use crate::keys::{self, JwkSet, PublicSigningKey};
use crate::license::{self, LicenseClaims};
use crate::rules;
use crate::{
    Command, Context, Ledger, LedgerError, ProductId, QueryResult, SeatFilter, TenantId, UserRef,
};

/// A signed license file and what it says.
#[derive(Debug, Clone)]
pub struct SignedLicense {
    /// The JWS compact serialisation.
    pub token: String,
    pub claims: LicenseClaims,
}

impl Ledger {
    /// The tenant's public keys, newest (the one signing) first.
    pub async fn signing_keys(&self, tenant: TenantId) -> QueryResult<Vec<PublicSigningKey>> {
        Ok(self.store.signing_keys(tenant).await?)
    }

    /// The tenant's public keys as a JWK Set.
    pub async fn jwks(&self, tenant: TenantId) -> QueryResult<JwkSet> {
        let keys = self.signing_keys(tenant).await?;
        Ok(JwkSet {
            keys: keys.iter().map(keys::Jwk::from).collect(),
        })
    }

    /// Adds a new signing key that signs from now on; the old ones stay for verification.
    pub async fn rotate_signing_key(&self, ctx: &Context) -> Result<PublicSigningKey, LedgerError> {
        self.add_signing_key(ctx, false).await?;
        self.newest_key(ctx.tenant).await
    }

    /// Makes the tenant's first key if it has none (tenants made before keys existed; also
    /// run by `allot migrate`). Answers whether a key was made.
    pub async fn ensure_signing_key(&self, ctx: &Context) -> Result<bool, LedgerError> {
        Ok(self.add_signing_key(ctx, true).await? > 0)
    }

    async fn add_signing_key(&self, ctx: &Context, first_only: bool) -> Result<u64, LedgerError> {
        let key = self.vault.generate(ctx.tenant)?;
        let outcome = self
            .execute(
                ctx,
                Command::AddSigningKey {
                    kid: key.kid,
                    public_key: key.x,
                    sealed_private_key: key.sealed,
                    first_only,
                },
            )
            .await?;
        Ok(outcome.changed())
    }

    async fn newest_key(&self, tenant: TenantId) -> Result<PublicSigningKey, LedgerError> {
        self.signing_keys(tenant)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| LedgerError::Store("the tenant has no signing key".into()))
    }

    /// How long the tenant's license files are valid, in seconds.
    pub async fn license_validity(&self, tenant: TenantId) -> QueryResult<i64> {
        Ok(self.store.license_validity(tenant).await?)
    }

    async fn tenant_by_id(&self, tenant: TenantId) -> QueryResult<crate::Tenant> {
        self.tenants()
            .await?
            .into_iter()
            .find(|t| t.id == tenant)
            .ok_or_else(|| LedgerError::UnknownTenant(format!("#{tenant}")))
    }

    /// A signed file of everything `user` may use offline: the products held (prerequisites
    /// met), the seats behind them and the devices they are activated on.
    pub async fn user_license(
        &self,
        tenant: TenantId,
        user: &UserRef,
    ) -> Result<SignedLicense, LedgerError> {
        let now = self.clock.now();
        let user = self.user(tenant, user).await?;
        let view = self.user_view(tenant, &UserRef::Id(user.id)).await?;
        let products = license::licensed_products(&view);
        let seats = self.held_seats(tenant, user.id).await?;
        let claims = license::claims(
            &self.tenant_by_id(tenant).await?,
            Some(&user),
            user.uuid.to_string(),
            &products,
            &seats,
            now,
            self.license_validity(tenant).await?,
        );
        let signed = self.sign(tenant, claims).await?;
        // A license file fetched is a use of the seats it names (the idle-seat harvest).
        if !seats.is_empty() {
            self.record_use(tenant, &UserRef::Id(user.id), None).await?;
        }
        Ok(signed)
    }

    /// A signed file for one held seat: its holder, its product and the device it is activated
    /// on. Refused for a seat nobody holds, an expired seat, or one whose product the holder
    /// may not use (a prerequisite missing).
    pub async fn seat_license(
        &self,
        tenant: TenantId,
        seat: Uuid,
    ) -> Result<SignedLicense, LedgerError> {
        let now = self.clock.now();
        let seat = self.seat(tenant, seat).await?;
        let holder = seat.holder.ok_or(LedgerError::NotHeld(seat.id))?;
        let user = self.user(tenant, &UserRef::Id(holder)).await?;
        let view = self.user_view(tenant, &UserRef::Id(holder)).await?;
        let licensed = license::licensed_products(&view);
        let Some(product) = licensed.iter().copied().find(|p| p.id == seat.product) else {
            // Held but not usable: its product expired, or a prerequisite is missing.
            let product = view.iter().find(|v| v.product.id == seat.product);
            let name_of = |id: ProductId| {
                view.iter()
                    .find(|v| v.product.id == id)
                    .map(|v| format!("{}/{}", v.product.owner, v.product.name))
                    .unwrap_or_else(|| format!("#{id}"))
            };
            return Err(match product.and_then(|v| v.product.prerequisite) {
                Some(prerequisite) if product.is_some_and(|v| v.assigned) => {
                    LedgerError::PrerequisiteMissing {
                        product: seat.product,
                        name: name_of(seat.product),
                        prerequisite,
                        prerequisite_name: name_of(prerequisite),
                    }
                }
                _ => LedgerError::ProductExpired {
                    product: seat.product,
                    name: name_of(seat.product),
                },
            });
        };
        if seat
            .effective_expiry(Some(product))
            .is_some_and(|e| e <= now)
        {
            return Err(LedgerError::SeatExpired(seat.id));
        }
        let claims = license::claims(
            &self.tenant_by_id(tenant).await?,
            Some(&user),
            user.uuid.to_string(),
            &[product],
            std::slice::from_ref(&seat),
            now,
            self.license_validity(tenant).await?,
        );
        let signed = self.sign(tenant, claims).await?;
        self.record_use(tenant, &UserRef::Id(holder), Some(seat.id))
            .await?;
        Ok(signed)
    }

    async fn held_seats(
        &self,
        tenant: TenantId,
        user: crate::UserId,
    ) -> QueryResult<Vec<crate::Seat>> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .seats(
                    tenant,
                    &SeatFilter {
                        holder: Some(user),
                        after_number: after,
                        limit: Some(rules::MAX_PAGE),
                        ..Default::default()
                    },
                )
                .await?;
            let done = (page.len() as i64) < rules::MAX_PAGE;
            after = page.last().map(|s| s.number);
            all.extend(page);
            if done || after.is_none() {
                return Ok(all);
            }
        }
    }

    /// Signs with the tenant's newest key, making the tenant's first key if it has none.
    async fn sign(
        &self,
        tenant: TenantId,
        claims: LicenseClaims,
    ) -> Result<SignedLicense, LedgerError> {
        let key = match self.store.active_signing_key(tenant).await? {
            Some(key) => key,
            None => {
                self.ensure_signing_key(&Context::new(tenant, "system"))
                    .await?;
                self.store
                    .active_signing_key(tenant)
                    .await?
                    .ok_or_else(|| LedgerError::Store("the tenant has no signing key".into()))?
            }
        };
        let signing = self.vault.open(tenant, &key.kid, &key.sealed)?;
        let payload = serde_json::to_value(&claims)
            .map_err(|e| LedgerError::Store(format!("encoding license claims: {e}")))?;
        let token = keys::sign_compact(&signing, &key.kid, &payload)?;
        Ok(SignedLicense { token, claims })
    }
}
