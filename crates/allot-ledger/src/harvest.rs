//! The ledger's surface for idle seats: policies, exemptions, the listing of idle seats and the
//! harvest that reclaims them, one [`Command::HarvestSeat`] per seat.

use crate::{
    Command, Context, Group, HarvestAction, IdleSeat, Ledger, LedgerError, ProductHarvestPolicy,
    QueryResult, TenantId, User, UserRef,
};

/// The commands a harvest of these idle seats runs: one [`Command::HarvestSeat`] per seat whose
/// policy says release, in order.
pub fn harvest_commands(idle: &[IdleSeat]) -> Vec<Command> {
    idle.iter()
        .filter(|seat| seat.action == HarvestAction::Release)
        .map(|seat| Command::HarvestSeat { seat: seat.seat })
        .collect()
}

/// The idle seats with `released` set from the results of [`harvest_commands`] (one per
/// seat it made a command for, in order): released when its command changed it.
pub fn harvest_report(
    mut idle: Vec<IdleSeat>,
    results: &[Result<crate::Outcome, LedgerError>],
) -> Vec<IdleSeat> {
    let mut results = results.iter();
    for seat in idle
        .iter_mut()
        .filter(|seat| seat.action == HarvestAction::Release)
    {
        seat.released = matches!(results.next(), Some(Ok(outcome)) if outcome.changed() > 0);
    }
    idle
}

impl Ledger {
    /// Held seats idle past their product's policy; exempt holders' seats say why they stay.
    pub async fn idle_seats(&self, tenant: TenantId) -> QueryResult<Vec<IdleSeat>> {
        Ok(self.store.idle_seats(tenant, self.now()).await?)
    }

    pub async fn harvest_policies(
        &self,
        tenant: TenantId,
    ) -> QueryResult<Vec<ProductHarvestPolicy>> {
        Ok(self.store.harvest_policies(tenant).await?)
    }

    pub async fn harvest_exempt_groups(&self, tenant: TenantId) -> QueryResult<Vec<Group>> {
        Ok(self.store.harvest_exempt_groups(tenant).await?)
    }

    pub async fn harvest_exempt_users(&self, tenant: TenantId) -> QueryResult<Vec<User>> {
        Ok(self.store.harvest_exempt_users(tenant).await?)
    }

    /// Lists the tenant's idle seats and, unless `dry_run`, releases those whose policy says
    /// so, each by its own [`Command::HarvestSeat`] (which re-checks that the seat is still
    /// idle: a use in between wins, and the seat is reported with `released: false`).
    pub async fn harvest(
        &self,
        ctx: &Context,
        dry_run: bool,
    ) -> Result<Vec<IdleSeat>, LedgerError> {
        let mut idle = self.idle_seats(ctx.tenant).await?;
        if dry_run {
            return Ok(idle);
        }
        for seat in idle.iter_mut() {
            if seat.action != HarvestAction::Release || seat.exempt.is_some() {
                continue;
            }
            let outcome = self
                .execute(ctx, Command::HarvestSeat { seat: seat.seat })
                .await?;
            seat.released = outcome.changed() > 0;
        }
        Ok(idle)
    }

    /// Runs [`Ledger::harvest`] in every tenant (the server's schedule); answers how many seats
    /// were released.
    pub async fn harvest_all_tenants(&self, actor: &str) -> Result<u64, LedgerError> {
        let mut released = 0;
        for tenant in self.tenants().await? {
            let ctx = Context::new(tenant.id, actor);
            released += self
                .harvest(&ctx, false)
                .await?
                .iter()
                .filter(|s| s.released)
                .count() as u64;
        }
        Ok(released)
    }

    /// Records a use of a user's seats (or one seat) that changes nothing else, e.g. a license
    /// file fetched; written at most once an hour per seat.
    pub async fn record_use(
        &self,
        tenant: TenantId,
        user: &UserRef,
        seat: Option<uuid::Uuid>,
    ) -> Result<(), LedgerError> {
        let ctx = Context::new(tenant, "system");
        self.execute(
            &ctx,
            Command::RecordUse {
                user: user.clone(),
                seat,
            },
        )
        .await?;
        Ok(())
    }
}
