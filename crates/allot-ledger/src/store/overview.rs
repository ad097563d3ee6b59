//! Read side for people looking at the ledger (the web console, reports): user search, a
//! company's pools and quotas, and what expires soon. Reads only committed state.

use sqlx::Row;

use super::Store;
use super::ops::{self, USER_COLUMNS, sql, user_from_row};
use super::queries::{AUDIT_COLUMNS, AuditFilter, QueryResult, audit_from_row};
use crate::command::CompanyRef;
use crate::model::*;
use crate::rules;

/// Filters for finding users; every field narrows the list. Pages go by user id.
#[derive(Debug, Clone, Default)]
pub struct UserSearch {
    /// Text found (without regard to ASCII case) in the login, the name ("first last") or
    /// the e-mail address.
    pub text: Option<String>,
    pub company: Option<CompanyId>,
    pub retired: Option<bool>,
    /// Only users whose id is above this (cursor).
    pub after_id: Option<UserId>,
    pub limit: Option<i64>,
}

/// `%text%` for LIKE, with LIKE's own wildcards in the text taken literally (escaped by `\`).
fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.trim().to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

impl Store {
    pub async fn find_users(
        &self,
        tenant: TenantId,
        search: &UserSearch,
    ) -> QueryResult<Vec<User>> {
        let pattern = search
            .text
            .as_deref()
            .filter(|t| !t.trim().is_empty())
            .map(contains_pattern);
        let rows = sqlx::query(sql(format!(
            "SELECT {USER_COLUMNS} FROM users u LEFT JOIN companies c \
             ON c.tenant_id = u.tenant_id AND c.id = u.company_id \
             WHERE u.tenant_id = $1 AND u.id > $2 \
               AND ($3 IS NULL OR lower(u.login) LIKE $3 ESCAPE '\\' \
                    OR lower(u.first_name || ' ' || u.last_name) LIKE $3 ESCAPE '\\' \
                    OR lower(u.email) LIKE $3 ESCAPE '\\') \
               AND ($4 IS NULL OR u.company_id = $4) \
               AND ($5 IS NULL OR u.retired = $5) \
             ORDER BY u.id LIMIT $6"
        )))
        .bind(tenant)
        .bind(search.after_id.unwrap_or(0))
        .bind(pattern)
        .bind(search.company)
        .bind(search.retired.map(i64::from))
        .bind(rules::page_limit(search.limit))
        .fetch_all(&mut self.read_conn().await?)
        .await?;
        rows.iter().map(|r| Ok(user_from_row(r)?.user)).collect()
    }

    /// The newest audit records matching `filter` (its `after_seq` is ignored), newest first:
    /// what a person looking at the trail wants to see first.
    pub async fn audit_latest(
        &self,
        tenant: TenantId,
        filter: &AuditFilter,
    ) -> QueryResult<Vec<AuditEvent>> {
        let rows = sqlx::query(sql(format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE tenant_id = $1 \
               AND ($2 IS NULL OR at >= $2) AND ($3 IS NULL OR at < $3) AND ($4 IS NULL OR actor = $4) \
               AND ($5 IS NULL OR user_id = $5) AND ($6 IS NULL OR product_id = $6) \
               AND ($7 IS NULL OR seat_uuid = $7) ORDER BY seq DESC LIMIT $8"
        )))
        .bind(tenant)
        .bind(filter.since)
        .bind(filter.until)
        .bind(filter.actor.clone())
        .bind(filter.user)
        .bind(filter.product)
        .bind(filter.seat.map(|s| s.to_string()))
        .bind(rules::page_limit(filter.limit))
        .fetch_all(&mut self.read_conn().await?)
        .await?;
        rows.iter().map(audit_from_row).collect()
    }

    /// Every product the company has a quota of or seats in its own pool of.
    pub async fn company_pools(
        &self,
        tenant: TenantId,
        company: &CompanyRef,
        now: i64,
    ) -> QueryResult<Vec<CompanyPool>> {
        let company = {
            let mut conn = self.read_conn().await?;
            ops::find_company(&mut conn, tenant, company).await?
        };
        let rows = sqlx::query(
            "SELECT p.id, o.name AS owner_name, p.name, p.expires_at, q.quota, q.used, \
               (SELECT count(*) FROM seats s WHERE s.tenant_id = p.tenant_id AND s.product_id = p.id \
                  AND s.pool_company_id = $2 AND s.overflow = 0 \
                  AND (s.expires_at IS NULL OR s.expires_at > $3)) AS own_total, \
               (SELECT count(*) FROM seats s WHERE s.tenant_id = p.tenant_id AND s.product_id = p.id \
                  AND s.pool_company_id = $2 AND s.holder_id IS NOT NULL \
                  AND (s.expires_at IS NULL OR s.expires_at > $3)) AS own_in_use \
             FROM products p JOIN owners o ON o.tenant_id = p.tenant_id AND o.id = p.owner_id \
             LEFT JOIN company_quotas q ON q.tenant_id = p.tenant_id AND q.company_id = $2 \
               AND q.product_id = p.id \
             WHERE p.tenant_id = $1 AND (q.product_id IS NOT NULL OR EXISTS (SELECT 1 FROM seats s \
               WHERE s.tenant_id = p.tenant_id AND s.product_id = p.id AND s.pool_company_id = $2)) \
             ORDER BY p.sort_order, p.id",
        )
        .bind(tenant)
        .bind(company.id)
        .bind(now)
        .fetch_all(&mut self.read_conn().await?)
        .await?;
        rows.iter()
            .map(|row| {
                // As in the tenant's pools: an expired product's seats count for nothing.
                let expired = rules::is_expired(row.try_get("expires_at")?, now);
                let (own_total, own_in_use) = if expired {
                    (0, 0)
                } else {
                    (
                        row.try_get::<i64, _>("own_total")?,
                        row.try_get::<i64, _>("own_in_use")?,
                    )
                };
                Ok(CompanyPool {
                    company: company.id,
                    product: row.try_get("id")?,
                    owner: row.try_get("owner_name")?,
                    name: row.try_get("name")?,
                    quota: row.try_get("quota")?,
                    quota_used: row.try_get::<Option<i64>, _>("used")?.unwrap_or(0),
                    own_total,
                    own_in_use,
                    own_free: rules::free_seats(own_total, own_in_use),
                })
            })
            .collect()
    }

    /// Seats (grouped by product and expiry) and products that expire after `now` and at or
    /// before `until`, soonest first. Seats that go no later than their product are counted
    /// with the product, not again on their own.
    pub async fn expiring(
        &self,
        tenant: TenantId,
        now: i64,
        until: i64,
    ) -> QueryResult<Vec<Expiry>> {
        let seat_rows = sqlx::query(
            "SELECT s.product_id, s.expires_at, count(*) AS seats, \
               CAST(sum(CASE WHEN s.holder_id IS NULL THEN 0 ELSE 1 END) AS BIGINT) AS held \
             FROM seats s JOIN products p ON p.tenant_id = s.tenant_id AND p.id = s.product_id \
             WHERE s.tenant_id = $1 AND s.overflow = 0 \
               AND s.expires_at > $2 AND s.expires_at <= $3 \
               AND (p.expires_at IS NULL OR p.expires_at > s.expires_at) \
             GROUP BY s.product_id, s.expires_at",
        )
        .bind(tenant)
        .bind(now)
        .bind(until)
        .fetch_all(&mut self.read_conn().await?)
        .await?;
        let product_rows = sqlx::query(
            "SELECT p.id, p.expires_at, \
               (SELECT count(*) FROM seats s WHERE s.tenant_id = p.tenant_id AND s.product_id = p.id \
                  AND s.overflow = 0 AND (s.expires_at IS NULL OR s.expires_at > $2)) AS seats, \
               (SELECT count(*) FROM seats s WHERE s.tenant_id = p.tenant_id AND s.product_id = p.id \
                  AND s.holder_id IS NOT NULL AND (s.expires_at IS NULL OR s.expires_at > $2)) AS held \
             FROM products p WHERE p.tenant_id = $1 AND p.expires_at > $2 AND p.expires_at <= $3",
        )
        .bind(tenant)
        .bind(now)
        .bind(until)
        .fetch_all(&mut self.read_conn().await?)
        .await?;
        let mut expiring = Vec::with_capacity(seat_rows.len() + product_rows.len());
        for (rows, whole_product) in [(&seat_rows, false), (&product_rows, true)] {
            for row in rows {
                let column = if whole_product { "id" } else { "product_id" };
                expiring.push(Expiry {
                    product: row.try_get(column)?,
                    at: rules::from_micros(row.try_get("expires_at")?),
                    whole_product,
                    seats: row.try_get("seats")?,
                    held: row.try_get("held")?,
                });
            }
        }
        expiring.sort_by_key(|e| (e.at, e.product, e.whole_product));
        Ok(expiring)
    }
}

#[cfg(test)]
mod tests {
    use super::contains_pattern;

    #[test]
    fn like_wildcards_in_search_text_are_literal() {
        assert_eq!(contains_pattern(" Ann "), "%ann%");
        assert_eq!(contains_pattern("50%_a\\b"), "%50\\%\\_a\\\\b%");
    }
}
