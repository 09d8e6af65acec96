//! A PostgreSQL store in a schema of its own, for one simulation: sweeps
//! expire every due hold of the database they run in, so two runs (or a run
//! and a server) sharing a schema would expire each other's holds.

use std::str::FromStr;

use inventory_core::Error;
use inventory_sqlx::{PgOptions, PgStore};
use rand::Rng;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

/// A migrated store in a fresh schema, and the schema's name.
///
/// # Errors
/// [`Error::Unavailable`] when the database cannot be reached or the schema
/// made.
pub async fn fresh_store(url: &str, options: PgOptions) -> Result<(PgStore, String), Error> {
    let unavailable = |e: sqlx::Error| Error::Unavailable {
        reason: e.to_string(),
    };
    let schema = format!("sim_{:016x}", rand::rng().random::<u64>());
    let mut conn = PgConnection::connect(url).await.map_err(unavailable)?;
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await
        .map_err(unavailable)?;
    let _ = conn.close().await;
    let connect = PgConnectOptions::from_str(url)
        .map_err(unavailable)?
        .options([("search_path", schema.as_str())]);
    let store = PgStore::connect_with(connect, options).await?;
    store.migrate().await?;
    Ok((store, schema))
}

/// Drops a schema [`fresh_store`] made (its store should be dropped first).
///
/// # Errors
/// [`Error::Unavailable`] when the database cannot be reached.
pub async fn drop_schema(url: &str, schema: &str) -> Result<(), Error> {
    let unavailable = |e: sqlx::Error| Error::Unavailable {
        reason: e.to_string(),
    };
    let mut conn = PgConnection::connect(url).await.map_err(unavailable)?;
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(&mut conn)
        .await
        .map_err(unavailable)?;
    let _ = conn.close().await;
    Ok(())
}
