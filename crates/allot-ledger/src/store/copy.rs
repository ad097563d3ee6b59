//! Whole-store operations: an online backup of SQLite (`VACUUM INTO`), and copying every table
//! of one store into another (SQLite to PostgreSQL and back), ids, audit chain and keys kept.
//!
//! [`TABLES`] is the one list of the schema's tables, in an order where every row's references
//! point at rows already copied; [`Store::schema_tables`] reads the tables the migrations made,
//! so a test fails when a migration adds a table this list does not cover.

use sqlx::any::AnyRow;
use sqlx::{Column, Row};

use super::ops::sql;
use super::{Backend, Store};
use crate::error::StoreError;

/// Every table of the schema, parents before children: its name, the columns of its key (rows
/// are read in that order, and rows are found by it), and the columns that refer to rows of
/// the same table (a product's prerequisite may be a later product): those are written after
/// all the table's rows. Migrations that add a table add it here.
pub(crate) const TABLES: &[(&str, &str, &[&str])] = &[
    ("tenants", "id", &[]),
    ("owners", "tenant_id, id", &[]),
    ("companies", "tenant_id, id", &[]),
    ("users", "tenant_id, id", &[]),
    ("products", "tenant_id, id", &["prerequisite_id"]),
    ("plan_members", "tenant_id, plan_id, member_id", &[]),
    ("sessions", "tenant_id, uuid", &[]),
    ("seats", "tenant_id, number", &[]),
    // These two are kept by triggers on `seats`: the copy of the seats above rebuilds their
    // counts, and loading replaces them with the source's rows, recorded counts and refusal
    // counters included.
    ("pool_usage", "tenant_id, product_id", &[]),
    ("pool_free", "tenant_id, product_id, company_id", &[]),
    ("grants", "tenant_id, user_id, product_id", &[]),
    ("company_quotas", "tenant_id, company_id, product_id", &[]),
    ("computers", "tenant_id, hid", &[]),
    ("audit_events", "tenant_id, seq", &[]),
    ("logins", "tenant_id, login_key", &[]),
    ("api_tokens", "id", &[]),
    ("signing_keys", "tenant_id, seq", &[]),
    ("license_settings", "tenant_id", &[]),
    ("idempotency_keys", "tenant_id, principal, idem_key", &[]),
    ("webhook_endpoints", "tenant_id, id", &[]),
    ("webhook_deliveries", "id", &[]),
    ("server_secrets", "name", &[]),
    ("usage_buckets", "tenant_id, product_id, step, start", &[]),
    ("user_groups", "tenant_id, id", &[]),
    ("group_members", "tenant_id, group_id, user_id", &[]),
    ("group_licenses", "tenant_id, group_id, product_id", &[]),
    (
        "group_assignments",
        "tenant_id, group_id, user_id, product_id",
        &[],
    ),
    ("harvest_policies", "tenant_id, product_id", &[]),
    ("harvest_exempt_users", "tenant_id, user_id", &[]),
    ("harvest_exempt_groups", "tenant_id, group_id", &[]),
];

pub(crate) fn copied_tables() -> Vec<&'static str> {
    TABLES.iter().map(|(table, _, _)| *table).collect()
}

/// Tables a store has that are not data: the migrator's own bookkeeping.
const NOT_DATA: &[&str] = &["_sqlx_migrations"];

/// One cell. The schema uses only integers and text, on both engines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Null,
    Int(i64),
    Text(String),
}

/// One table's rows, in [`TABLES`] order, with its column names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableContent {
    pub table: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

/// Rows per multi-row INSERT (well under either engine's bound-parameter limit).
const INSERT_ROWS: usize = 100;

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// Binds a cell; a NULL is bound with its column's type (PostgreSQL refuses a bigint NULL
/// for a text column).
fn bind<'q>(query: AnyQuery<'q>, value: &Cell, text_column: bool) -> AnyQuery<'q> {
    match value {
        Cell::Null if text_column => query.bind(None::<String>),
        Cell::Null => query.bind(None::<i64>),
        Cell::Int(i) => query.bind(*i),
        Cell::Text(t) => query.bind(t.clone()),
    }
}

fn cell(row: &AnyRow, index: usize) -> Result<Cell, sqlx::Error> {
    if let Ok(value) = row.try_get::<Option<i64>, _>(index) {
        return Ok(value.map_or(Cell::Null, Cell::Int));
    }
    let value: Option<String> = row.try_get(index)?;
    Ok(value.map_or(Cell::Null, Cell::Text))
}

impl Store {
    /// The data tables the schema has, sorted by name.
    pub async fn schema_tables(&self) -> Result<Vec<String>, StoreError> {
        let query = match self.backend {
            Backend::Sqlite => {
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
                 ORDER BY name"
            }
            Backend::Postgres => {
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
                 ORDER BY table_name"
            }
        };
        let mut conn = self.write_conn().await?;
        let names: Vec<String> = sqlx::query_scalar(query).fetch_all(&mut conn).await?;
        Ok(names
            .into_iter()
            .filter(|n| !NOT_DATA.contains(&n.as_str()))
            .collect())
    }

    /// Whether no table holds a row.
    pub async fn is_empty(&self) -> Result<bool, StoreError> {
        let mut conn = self.write_conn().await?;
        for (table, _, _) in TABLES {
            let any: Option<i64> =
                sqlx::query_scalar(sql(format!("SELECT 1 FROM {table} LIMIT 1")))
                    .fetch_optional(&mut conn)
                    .await?;
            if any.is_some() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Every table's rows, read in one transaction (one consistent snapshot).
    pub async fn contents(&self) -> Result<Vec<TableContent>, StoreError> {
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin(self.backend).await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .execute(&mut *tx)
                .await?;
        }
        let mut out = Vec::with_capacity(TABLES.len());
        for (table, order, _) in TABLES {
            let rows = sqlx::query(sql(format!("SELECT * FROM {table} ORDER BY {order}")))
                .fetch_all(&mut *tx)
                .await?;
            let columns = match rows.first() {
                Some(r) => r.columns().iter().map(|c| c.name().to_owned()).collect(),
                None => Vec::new(),
            };
            let rows = rows
                .iter()
                .map(|r| (0..r.len()).map(|i| cell(r, i)).collect())
                .collect::<Result<Vec<Vec<Cell>>, sqlx::Error>>()?;
            out.push(TableContent {
                table: (*table).to_owned(),
                columns,
                rows,
            });
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Empties every table in one transaction (what `restore --force` replaces). The audit
    /// trail's append-only triggers are lifted inside that transaction only.
    pub async fn clear(&self) -> Result<(), StoreError> {
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin(self.backend).await?;
        match self.backend {
            Backend::Postgres => {
                let tables: Vec<&str> = TABLES.iter().map(|(t, _, _)| *t).collect();
                // TRUNCATE fires no row triggers; identities restart with the rows gone.
                sqlx::query(sql(format!(
                    "TRUNCATE {} RESTART IDENTITY CASCADE",
                    tables.join(", ")
                )))
                .execute(&mut *tx)
                .await?;
            }
            Backend::Sqlite => {
                let triggers: Vec<(String, String)> = sqlx::query_as(
                    "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' \
                     AND tbl_name = 'audit_events'",
                )
                .fetch_all(&mut *tx)
                .await?;
                for (name, _) in &triggers {
                    sqlx::query(sql(format!("DROP TRIGGER {name}")))
                        .execute(&mut *tx)
                        .await?;
                }
                for (table, _, _) in TABLES.iter().rev() {
                    sqlx::query(sql(format!("DELETE FROM {table}")))
                        .execute(&mut *tx)
                        .await?;
                }
                for (_, create) in &triggers {
                    sqlx::query(sql(create.clone())).execute(&mut *tx).await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Writes `contents` (another store's, same schema) into this empty store in one
    /// transaction, then moves PostgreSQL's identity sequences past the ids copied.
    pub async fn load(&self, contents: &[TableContent]) -> Result<(), StoreError> {
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin(self.backend).await?;
        if self.backend == Backend::Sqlite {
            // References are checked at commit, so rows may come in any order within a table.
            sqlx::query("PRAGMA defer_foreign_keys = ON")
                .execute(&mut *tx)
                .await?;
        }
        for content in contents.iter().filter(|c| !c.rows.is_empty()) {
            let (key, self_refs) = TABLES
                .iter()
                .find(|(t, _, _)| *t == content.table)
                .map(|(_, key, refs)| (*key, *refs))
                .ok_or_else(|| StoreError::Corrupt(format!("no table {}", content.table)))?;
            if matches!(content.table.as_str(), "pool_usage" | "pool_free") {
                // The seats just loaded made these rows through the triggers; the source's
                // own rows (what history has recorded, refusals ever) replace them.
                sqlx::query(sql(format!("DELETE FROM {}", content.table)))
                    .execute(&mut *tx)
                    .await?;
            }
            let index = |name: &str| content.columns.iter().position(|c| c == name);
            let text_columns = self.text_columns(&mut tx, &content.table).await?;
            let text: Vec<bool> = content
                .columns
                .iter()
                .map(|c| text_columns.contains(c))
                .collect();
            let deferred: Vec<usize> = self_refs.iter().filter_map(|c| index(c)).collect();
            let columns = content.columns.join(", ");
            for chunk in content.rows.chunks(INSERT_ROWS) {
                let width = content.columns.len();
                let values: Vec<String> = (0..chunk.len())
                    .map(|r| {
                        let params: Vec<String> =
                            (1..=width).map(|c| format!("${}", r * width + c)).collect();
                        format!("({})", params.join(", "))
                    })
                    .collect();
                let insert = format!(
                    "INSERT INTO {} ({columns}) VALUES {}",
                    content.table,
                    values.join(", ")
                );
                let mut query = sqlx::query(sql(insert));
                for row in chunk {
                    for (i, value) in row.iter().enumerate() {
                        let value = if deferred.contains(&i) {
                            &Cell::Null
                        } else {
                            value
                        };
                        query = bind(query, value, text[i]);
                    }
                }
                query.execute(&mut *tx).await?;
            }
            // Self-references, now that every row they may point at exists.
            let key_columns: Vec<&str> = key.split(',').map(str::trim).collect();
            let key_index: Vec<usize> = key_columns
                .iter()
                .map(|c| index(c).ok_or_else(|| StoreError::Corrupt(format!("no column {c}"))))
                .collect::<Result<_, _>>()?;
            for &column in &deferred {
                let condition: Vec<String> = key_columns
                    .iter()
                    .enumerate()
                    .map(|(i, c)| format!("{c} = ${}", i + 2))
                    .collect();
                let update = format!(
                    "UPDATE {} SET {} = $1 WHERE {}",
                    content.table,
                    content.columns[column],
                    condition.join(" AND ")
                );
                for row in content.rows.iter().filter(|r| r[column] != Cell::Null) {
                    let mut query = bind(sqlx::query(sql(update.clone())), &row[column], false);
                    for &k in &key_index {
                        query = bind(query, &row[k], text[k]);
                    }
                    query.execute(&mut *tx).await?;
                }
            }
        }
        if self.backend == Backend::Postgres {
            let identities: Vec<(String, String)> = sqlx::query_as(
                "SELECT table_name::text, column_name::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND is_identity = 'YES'",
            )
            .fetch_all(&mut *tx)
            .await?;
            for (table, column) in identities {
                sqlx::query(sql(format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), \
                     COALESCE(MAX({column}), 0) + 1, false) FROM {table}"
                )))
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// The columns of `table` declared as text (PostgreSQL; SQLite takes any value anywhere).
    async fn text_columns(
        &self,
        conn: &mut super::Conn,
        table: &str,
    ) -> Result<Vec<String>, StoreError> {
        if self.backend == Backend::Sqlite {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_scalar(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 AND data_type = 'text'",
        )
        .bind(table.to_owned())
        .fetch_all(conn)
        .await?)
    }

    /// A consistent copy of a SQLite store in a new file at `path`, taken while the store is in
    /// use: `VACUUM INTO` reads one snapshot as a reader does, so writers go on meanwhile.
    pub async fn backup_into(&self, path: &str) -> Result<(), StoreError> {
        if self.backend != Backend::Sqlite {
            return Err(StoreError::Unsupported(
                "online backup is for SQLite stores; back PostgreSQL up with pg_dump (docs/operations.md)",
            ));
        }
        let mut conn = self.write_conn().await?;
        sqlx::query("VACUUM INTO $1")
            .bind(path.to_owned())
            .execute(&mut conn)
            .await?;
        Ok(())
    }
}
