//! Spend per org and key since an instant, from the hour rollups: what the rate limiter's budgets
//! read at startup so that a restart does not forget the current period's spend (budget periods
//! start on UTC hours, so hour buckets cover them exactly, and hour rollups outlive retention).

use std::time::SystemTime;

use crate::db::{Col, Sql, Value};
use crate::{Store, StoreError, query};

/// The cost of one org's key since an instant.
#[derive(Debug, Clone, PartialEq)]
pub struct SpendRow {
    /// The org (`""` for requests without a key).
    pub org: String,
    /// The key's name within the org.
    pub user: String,
    /// USD of the requests whose cost is known.
    pub cost_usd: f64,
}

impl Store {
    /// The summed cost per (org, key) of the hours starting at or after `since`.
    ///
    /// # Errors
    /// The database failed.
    pub async fn spend_since(&self, since: SystemTime) -> Result<Vec<SpendRow>, StoreError> {
        let mut q = Sql::new(self.backend());
        q.push("SELECT org, user_name, SUM(cost_usd) FROM rollup_hour WHERE bucket >= ")
            .bind(Value::Int(Some(query::ms(since))))
            .push(" GROUP BY org, user_name");
        let rows = self
            .pool
            .fetch(q, &[Col::Text, Col::Text, Col::Real])
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| SpendRow {
                org: r[0].text().unwrap_or_default().to_owned(),
                user: r[1].text().unwrap_or_default().to_owned(),
                cost_usd: r[2].real().unwrap_or(0.0),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    use octo_core::usage::Usage;

    use crate::testing::sample_at;
    use crate::{Store, StoreConfig};

    #[tokio::test]
    async fn sums_cost_per_org_and_key_from_an_hour_on() {
        let dir = std::env::temp_dir().join(format!("octo-spend-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("spend.db").display());
        let store = Store::open(&StoreConfig::with_url(url)).await.unwrap();
        let hour = UNIX_EPOCH + Duration::from_secs(1_796_194_800); // 2026-12-02T07:00:00Z
        let mut recs = Vec::new();
        for (i, (org, user, at, cost)) in [
            ("acme", "ci", hour, 0.5),
            ("acme", "ci", hour + Duration::from_secs(1800), 0.25),
            ("acme", "bob", hour, 1.0),
            ("acme", "ci", hour - Duration::from_secs(1), 9.0),
        ]
        .into_iter()
        .enumerate()
        {
            let ms = at.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
            let mut r = sample_at(i as u64, ms);
            r.org = Some(org.into());
            r.user = Some(user.into());
            r.usage = Some(Usage::default());
            r.cost_usd = Some(cost);
            recs.push(Arc::new(r));
        }
        store.write(&recs).await.unwrap();
        let mut rows = store.spend_since(hour).await.unwrap();
        rows.sort_by(|a, b| a.user.cmp(&b.user));
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].user.as_str(), rows[0].cost_usd), ("bob", 1.0));
        assert_eq!((rows[1].user.as_str(), rows[1].cost_usd), ("ci", 0.75));
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
