//! Human tables (default) or JSON (`--json`) for the admin commands.

use serde_json::Value;

pub struct Output {
    pub json: bool,
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
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

impl Output {
    fn json_or(&self, items: &[Value], human: impl FnOnce()) {
        if self.json {
            let shown = if items.len() == 1 {
                items[0].clone()
            } else {
                Value::Array(items.to_vec())
            };
            println!(
                "{}",
                serde_json::to_string_pretty(&shown).unwrap_or_default()
            );
        } else {
            human();
        }
    }

    pub fn products(&self, items: &[Value]) {
        self.json_or(items, || {
            table(
                &[
                    "ID",
                    "PRODUCT",
                    "KIND",
                    "RESTRICTED",
                    "TOTAL",
                    "IN USE",
                    "FREE",
                ],
                items
                    .iter()
                    .map(|p| {
                        vec![
                            text(&p["id"]),
                            format!("{}/{}", text(&p["owner"]), text(&p["name"])),
                            text(&p["kind"]),
                            if p["unrestricted"].as_bool() == Some(true) {
                                "no".into()
                            } else {
                                "yes".into()
                            },
                            text(&p["status"]["total"]),
                            text(&p["status"]["in_use"]),
                            text(&p["status"]["free"]),
                        ]
                    })
                    .collect(),
            )
        });
    }

    pub fn seats(&self, items: &[Value]) {
        self.json_or(items, || {
            table(
                &["SEAT", "NUMBER", "PRODUCT", "HOLDER", "COMPUTER", "EXPIRES"],
                items
                    .iter()
                    .map(|s| {
                        vec![
                            text(&s["id"]),
                            text(&s["number"]),
                            text(&s["product"]),
                            text(&s["holder"]),
                            text(&s["activation"]["computer_name"]),
                            text(&s["expires_at"]),
                        ]
                    })
                    .collect(),
            )
        });
    }

    pub fn users(&self, items: &[Value]) {
        self.json_or(items, || {
            table(
                &[
                    "ID", "LOGIN", "NAME", "EMAIL", "COMPANY", "MODE", "RETIRED", "UUID",
                ],
                items
                    .iter()
                    .map(|u| {
                        vec![
                            text(&u["id"]),
                            text(&u["login"]),
                            format!("{} {}", text(&u["first_name"]), text(&u["last_name"]))
                                .trim()
                                .to_owned(),
                            text(&u["email"]),
                            text(&u["company"]),
                            text(&u["license_mode"]),
                            text(&u["retired"]),
                            text(&u["uuid"]),
                        ]
                    })
                    .collect(),
            )
        });
    }

    pub fn companies(&self, items: &[Value]) {
        self.json_or(items, || {
            table(
                &["ID", "NAME", "POOL", "UUID"],
                items
                    .iter()
                    .map(|c| {
                        vec![
                            text(&c["id"]),
                            text(&c["name"]),
                            text(&c["pool_mode"]),
                            text(&c["uuid"]),
                        ]
                    })
                    .collect(),
            )
        });
    }

    pub fn views(&self, items: &[Value]) {
        self.json_or(items, || {
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
                            format!(
                                "{}/{}",
                                text(&v["product"]["owner"]),
                                text(&v["product"]["name"])
                            ),
                            text(&v["assigned"]),
                            text(&v["can_assign"]),
                            text(&v["status"]["total"]),
                            text(&v["status"]["in_use"]),
                            text(&v["status"]["free"]),
                        ]
                    })
                    .collect(),
            )
        });
    }

    pub fn sessions(&self, items: &[Value]) {
        self.json_or(items, || {
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
                            text(&s["id"]),
                            text(&s["user"]),
                            text(&s["client"]),
                            text(&s["device"]),
                            text(&s["started_at"]),
                            text(&s["lease_expires_at"]),
                        ]
                    })
                    .collect(),
            )
        });
    }

    pub fn status(&self, items: &[Value]) {
        self.json_or(items, || {
            table(
                &["PRODUCT", "KIND", "TOTAL", "INUSE", "FREE", "UTILISATION"],
                items
                    .iter()
                    .map(|p| {
                        let (total, in_use) = (
                            p["total"].as_i64().unwrap_or(0),
                            p["in_use"].as_i64().unwrap_or(0),
                        );
                        let pct = if total > 0 {
                            format!("{:>3}%", in_use * 100 / total)
                        } else {
                            "   -".into()
                        };
                        vec![
                            format!("{}/{}", text(&p["owner"]), text(&p["name"])),
                            text(&p["kind"]),
                            total.to_string(),
                            in_use.to_string(),
                            text(&p["free"]),
                            format!("{} {pct}", bar(in_use, total, 20)),
                        ]
                    })
                    .collect(),
            )
        });
    }

    pub fn audit(&self, items: &[Value]) {
        if self.json {
            // One event per line, so `--follow --json` streams.
            for e in items {
                println!("{}", serde_json::to_string(e).unwrap_or_default());
            }
            return;
        }
        for e in items {
            println!(
                "{:>6}  {}  {:<18} {:<12} user={} product={} seat={}",
                text(&e["seq"]),
                text(&e["at"]),
                text(&e["action"]),
                text(&e["actor"]),
                text(&e["user"]),
                text(&e["product"]),
                text(&e["seat"])
            );
        }
    }

    pub fn changed(&self, v: &Value) {
        if self.json {
            println!("{v}");
        } else {
            println!("changed: {}", text(&v["changed"]));
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn bars_fill_in_proportion() {
        assert_eq!(super::bar(0, 10, 10), "[..........]");
        assert_eq!(super::bar(5, 10, 10), "[#####.....]");
        assert_eq!(super::bar(12, 10, 10), "[##########]");
        assert_eq!(super::bar(1, 0, 4), "[####]");
        assert_eq!(super::bar(0, 0, 4), "[....]");
    }
}
