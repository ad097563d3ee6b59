//! Human tables (default) or JSON (`--json`) for the admin commands. The rows are the API's own
//! types, decoded from its answers; `--json` prints them as JSON lines, one object a line, so a
//! list and a stream (`audit --follow`) read the same way.

use std::fmt::Display;

use serde::Serialize;
use time::format_description::well_known::Rfc3339;

use crate::api::dto::{Changed, ProductWithStatus};
use allot_ledger::{
    AuditEvent, Company, Group, GroupView, IdleSeat, PoolStatus, ProductHarvestPolicy, Seat,
    Session, User, UserProductView,
};

pub struct Output {
    pub json: bool,
}

fn opt<T: Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

fn at(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// Prints rows under headers, columns padded to their widest cell.
fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row);
    }
}

/// A utilisation bar: `[#####.....]` for in_use of total.
pub fn bar(in_use: i64, total: i64, width: usize) -> String {
    let filled = if total <= 0 {
        if in_use > 0 { width } else { 0 }
    } else {
        ((in_use as f64 / total as f64) * width as f64)
            .round()
            .min(width as f64) as usize
    };
    format!("[{}{}]", "#".repeat(filled), ".".repeat(width - filled))
}

/// A one-line chart of `values` scaled to `top`: one of eight block heights a value.
pub fn sparkline(values: &[i64], top: i64) -> String {
    const BLOCKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let top = top.max(values.iter().copied().max().unwrap_or(0)).max(1);
    values
        .iter()
        .map(|&v| BLOCKS[((v.max(0) * 7 + top / 2) / top).min(7) as usize])
        .collect()
}

/// One value as one line of JSON.
pub fn json_line<T: Serialize>(value: &T) {
    println!(
        "{}",
        serde_json::to_string(value).expect("API types serialise")
    );
}

impl Output {
    /// With `--json`, every item as one line; otherwise the human form.
    fn rows<T: Serialize>(&self, items: &[T], human: impl FnOnce()) {
        if self.json {
            items.iter().for_each(json_line);
        } else {
            human();
        }
    }

    pub fn products(&self, items: &[ProductWithStatus]) {
        self.rows(items, || {
            table(
                &[
                    "ID",
                    "PRODUCT",
                    "KIND",
                    "RESTRICTED",
                    "TOTAL",
                    "IN USE",
                    "FREE",
                    "SEAT PRICE / 30 DAYS",
                ],
                items
                    .iter()
                    .map(|p| {
                        vec![
                            p.product.id.to_string(),
                            format!("{}/{}", p.product.owner, p.product.name),
                            p.product.kind.to_string(),
                            if p.product.unrestricted { "no" } else { "yes" }.into(),
                            p.status.total.to_string(),
                            p.status.in_use.to_string(),
                            p.status.free.to_string(),
                            p.product.seat_price_per_30_days.as_ref().map_or_else(
                                || "-".into(),
                                |s| format!("{} {}", s.amount, s.currency),
                            ),
                        ]
                    })
                    .collect(),
            )
        });
    }

    pub fn seats(&self, items: &[Seat]) {
        self.rows(items, || {
            table(
                &["SEAT", "NUMBER", "PRODUCT", "HOLDER", "COMPUTER", "EXPIRES"],
                items
                    .iter()
                    .map(|s| {
                        vec![
                            s.id.to_string(),
                            s.number.to_string(),
                            s.product.to_string(),
                            opt(s.holder),
                            opt(s.activation.as_ref().map(|a| &a.computer_name)),
                            opt(s.expires_at.map(at)),
                        ]
                    })
                    .collect(),
            )
        });
    }

    pub fn users(&self, items: &[User]) {
        self.rows(items, || {
            table(
                &[
                    "ID", "LOGIN", "NAME", "EMAIL", "COMPANY", "MODE", "RETIRED", "UUID",
                ],
                items
                    .iter()
                    .map(|u| {
                        vec![
                            u.id.to_string(),
                            u.login.clone(),
                            format!("{} {}", u.first_name, u.last_name)
                                .trim()
                                .to_owned(),
                            u.email.clone(),
                            opt(u.company),
                            u.license_mode.to_string(),
                            u.retired.to_string(),
                            u.uuid.to_string(),
                        ]
                    })
                    .collect(),
            )
        });
    }

    pub fn companies(&self, items: &[Company]) {
        self.rows(items, || {
            table(
                &["ID", "NAME", "POOL", "UUID"],
                items
                    .iter()
                    .map(|c| {
                        vec![
                            c.id.to_string(),
                            c.name.clone(),
                            c.pool_mode.to_string(),
                            c.uuid.to_string(),
                        ]
                    })
                    .collect(),
            )
        });
    }

    pub fn views(&self, items: &[UserProductView]) {
        self.rows(items, || {
            table(
                &[
                    "PRODUCT",
                    "ASSIGNED",
                    "CAN ASSIGN",
                    "TOTAL",
                    "IN USE",
                    "FREE",
                ],
                items
                    .iter()
                    .map(|v| {
                        vec![
                            format!("{}/{}", v.product.owner, v.product.name),
                            v.assigned.to_string(),
                            v.can_assign.to_string(),
                            v.status.total.to_string(),
                            v.status.in_use.to_string(),
                            v.status.free.to_string(),
                        ]
                    })
                    .collect(),
            )
        });
    }

    pub fn sessions(&self, items: &[Session]) {
        self.rows(items, || {
            table(
                &[
                    "SESSION",
                    "USER",
                    "CLIENT",
                    "DEVICE",
                    "STARTED",
                    "LEASE UNTIL",
                ],
                items
                    .iter()
                    .map(|s| {
                        vec![
                            s.id.to_string(),
                            s.user.to_string(),
                            s.client.to_string(),
                            if s.device.is_empty() {
                                "-".into()
                            } else {
                                s.device.clone()
                            },
                            at(s.started_at),
                            at(s.lease_expires_at),
                        ]
                    })
                    .collect(),
            )
        });
    }

    /// A product's usage history: a sparkline of the peak seats held against the seats
    /// bought, then one row a point.
    pub fn usage(&self, usage: &crate::api::v1::usage::ProductUsage) {
        if self.json {
            usage.points.iter().for_each(json_line);
            return;
        }
        let peaks: Vec<i64> = usage.points.iter().map(|p| p.in_use_max).collect();
        let total = usage.points.iter().map(|p| p.total).max().unwrap_or(0);
        println!(
            "{}/{} by the {}: peak seats in use of {total} bought",
            usage.product.owner, usage.product.name, usage.step
        );
        println!("{}", sparkline(&peaks, total));
        let priced = usage.unused_seat_cost.is_some();
        let mut headers = vec!["at", "total", "in use max", "in use avg", "denied"];
        if priced {
            headers.push("unused cost");
        }
        table(
            &headers,
            usage
                .points
                .iter()
                .map(|p| {
                    let mut row = vec![
                        at(p.at),
                        p.total.to_string(),
                        p.in_use_max.to_string(),
                        format!("{:.2}", p.in_use_avg),
                        p.denied.to_string(),
                    ];
                    if let Some(cost) = p.unused_seat_cost {
                        row.push(cost.to_string());
                    }
                    row
                })
                .collect(),
        );
        if let (Some(cost), Some(currency)) = (usage.unused_seat_cost, &usage.currency) {
            println!("Unused seats cost {cost} {currency} over these points.");
        }
    }

    pub fn status(&self, items: &[PoolStatus]) {
        self.rows(items, || {
            table(
                &["PRODUCT", "KIND", "TOTAL", "INUSE", "FREE", "UTILISATION"],
                items
                    .iter()
                    .map(|p| {
                        let pct = if p.total > 0 {
                            format!("{:>3}%", p.in_use * 100 / p.total)
                        } else {
                            "   -".into()
                        };
                        vec![
                            format!("{}/{}", p.owner, p.name),
                            p.kind.to_string(),
                            p.total.to_string(),
                            p.in_use.to_string(),
                            p.free.to_string(),
                            format!("{} {pct}", bar(p.in_use, p.total, 20)),
                        ]
                    })
                    .collect(),
            )
        });
    }

    pub fn audit(&self, items: &[AuditEvent]) {
        if self.json {
            items.iter().for_each(json_line);
            return;
        }
        for e in items {
            println!(
                "{:>6}  {}  {:<18} {:<12} user={} product={} seat={}",
                e.seq,
                at(e.at),
                e.action,
                e.actor,
                opt(e.user),
                opt(e.product),
                opt(e.seat)
            );
        }
    }

    /// Idle seats: what the harvest would do (or did) with each, and why.
    pub fn idle_seats(&self, items: &[IdleSeat]) {
        self.rows(items, || {
            if items.is_empty() {
                println!("no idle seats");
                return;
            }
            table(
                &[
                    "SEAT",
                    "PRODUCT",
                    "USER",
                    "LAST USED",
                    "IDLE DAYS",
                    "POLICY",
                    "RESULT",
                ],
                items
                    .iter()
                    .map(|s| {
                        vec![
                            s.seat.to_string(),
                            s.product_name.clone(),
                            s.login.clone(),
                            at(s.last_used_at),
                            s.idle_days.to_string(),
                            format!("{} after {} days", s.action, s.policy_idle_days),
                            match (&s.exempt, s.released) {
                                (Some(why), _) => format!("kept (exempt: {why})"),
                                (None, true) => "released".to_owned(),
                                (None, false) => "kept".to_owned(),
                            },
                        ]
                    })
                    .collect(),
            );
        });
    }

    pub fn harvest_policies(&self, items: &[ProductHarvestPolicy]) {
        self.rows(items, || {
            table(
                &["ID", "PRODUCT", "IDLE DAYS", "ACTION"],
                items
                    .iter()
                    .map(|p| {
                        vec![
                            p.product.to_string(),
                            format!("{}/{}", p.owner, p.name),
                            p.idle_days.to_string(),
                            p.action.to_string(),
                        ]
                    })
                    .collect(),
            );
        });
    }

    pub fn tenants(&self, items: &[allot_ledger::Tenant]) {
        self.rows(items, || {
            table(
                &["ID", "NAME", "CREATED"],
                items
                    .iter()
                    .map(|t| vec![t.id.to_string(), t.name.clone(), at(t.created_at)])
                    .collect(),
            );
        });
    }

    pub fn logins(&self, items: &[allot_ledger::LoginInfo]) {
        self.rows(items, || {
            table(
                &["LOGIN", "ROLE", "USER"],
                items
                    .iter()
                    .map(|l| vec![l.login.clone(), l.role.to_string(), opt(l.user)])
                    .collect(),
            );
        });
    }

    pub fn tokens(&self, items: &[allot_ledger::TokenInfo]) {
        self.rows(items, || {
            table(
                &["ID", "ROLE", "LOGIN", "USER", "LABEL", "EXPIRES", "REVOKED"],
                items
                    .iter()
                    .map(|t| {
                        vec![
                            t.id.to_string(),
                            t.role.to_string(),
                            t.login.clone(),
                            opt(t.user),
                            t.label.clone(),
                            at(t.expires_at),
                            opt(t.revoked_at.map(at)),
                        ]
                    })
                    .collect(),
            );
        });
    }

    pub fn groups(&self, items: &[Group]) {
        self.rows(items, || {
            table(
                &["ID", "NAME", "UUID"],
                items
                    .iter()
                    .map(|g| vec![g.id.to_string(), g.name.clone(), g.uuid.to_string()])
                    .collect(),
            )
        });
    }

    /// A group: its licenses, then one row per member and license with the assignment state.
    pub fn group(&self, g: &GroupView) {
        if self.json {
            json_line(g);
            return;
        }
        println!("group {} ({}), {} members", g.name, g.id, g.members.len());
        let licenses: Vec<&str> = g.licenses.iter().map(|l| l.product_name.as_str()).collect();
        println!(
            "licenses: {}",
            if licenses.is_empty() {
                "-".to_owned()
            } else {
                licenses.join(", ")
            }
        );
        let mut rows: Vec<Vec<String>> = g
            .assignments
            .iter()
            .map(|a| {
                vec![
                    a.login.clone(),
                    a.product_name.clone(),
                    a.state.to_string(),
                    opt(a.reason.as_deref()),
                    a.queue_number.to_string(),
                ]
            })
            .collect();
        // Members without any license still show.
        for m in &g.members {
            if !g.assignments.iter().any(|a| a.user == m.user) {
                rows.push(vec![
                    m.login.clone(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                ]);
            }
        }
        table(&["MEMBER", "PRODUCT", "STATE", "REASON", "QUEUE"], rows);
    }

    pub fn changed(&self, v: &Changed) {
        if self.json {
            json_line(v);
        } else {
            println!("changed: {}", v.changed);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sparkline_scales_to_the_seats_bought() {
        assert_eq!(super::sparkline(&[0, 1, 2, 4], 4), "▁▃▅█");
        assert_eq!(super::sparkline(&[], 4), "");
        // Overflow beyond what was bought tops out.
        assert_eq!(super::sparkline(&[0, 8], 4), "▁█");
    }

    #[test]
    fn bars_fill_in_proportion() {
        assert_eq!(super::bar(0, 10, 10), "[..........]");
        assert_eq!(super::bar(5, 10, 10), "[#####.....]");
        assert_eq!(super::bar(12, 10, 10), "[##########]");
        assert_eq!(super::bar(1, 0, 4), "[####]");
        assert_eq!(super::bar(0, 0, 4), "[....]");
    }
}
