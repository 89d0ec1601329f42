//! After a call: feeding the spike detector, the downgrade hook of cheapest-variant
//! routing, and reading and seeding budget use.

use super::*;

impl Governor {
    /// Feed a finished call to the spike detector (live, priced calls only).
    pub fn observe(&self, trace: &TraceRecord) {
        let (Some(d), Some(cost)) = (&self.spikes, trace.cost) else {
            return;
        };
        if trace.origin != Origin::Live || cost.0 <= 0 {
            return;
        }
        let cs = trace_scope(trace);
        let now = now_ms();
        for s in self.spike_scopes(&cs) {
            if let Some(spike) = d.observe(&s, cost, now) {
                self.stats.spikes.fetch_add(1, Ordering::Relaxed);
                let st = d.settings();
                let message = format!(
                    "spend this {} is ${} against a normal of ${} (z = {:.1}); action: {} until {}",
                    humantime::format_duration(st.bucket),
                    spike.bucket_spend.to_dollar_string(),
                    spike.mean.to_dollar_string(),
                    spike.z,
                    st.action.as_str(),
                    rfc3339(spike.until_ms)
                );
                self.alert(AlertNotice {
                    source: "spike",
                    name: "spend_spike".into(),
                    scope: s.clone(),
                    state: AlertState::Firing,
                    value: Some(spike.bucket_spend.as_dollars()),
                    threshold: Some(st.z),
                    message,
                    dedupe_key: format!("spike|{s}|{}", spike.until_ms),
                    to: st.alert_to.clone(),
                    repeat: None,
                    at_ms: now,
                    incident: None,
                });
            }
        }
    }

    /// Should this function call take its cheapest qualifying variant? Yes while a
    /// budget it falls in is past `downgrade_at`, or (action `downgrade`) its scope spikes.
    pub fn wants_downgrade(&self, trace: &TraceRecord) -> bool {
        let cs = trace_scope(trace);
        let now = now_ms();
        if let Some(d) = &self.spikes {
            if d.settings().action == SpikeAction::Downgrade
                && self
                    .spike_scopes(&cs)
                    .iter()
                    .any(|s| d.flagged(s, now).is_some())
            {
                return true;
            }
        }
        if self.downgraded.is_empty() {
            return false;
        }
        self.cfg.budgets.iter().any(|b| {
            b.downgrade_at.is_some()
                && b.scope.applies(&cs).is_some_and(|v| {
                    let id = format!("cfg:{}|{}|{}", b.name, v, b.window.span(now).label);
                    self.downgraded.contains_key(&id)
                })
        })
    }

    /// Seed the budget buckets of the current windows from the store's live spend (at
    /// startup, before serving; blocking).
    pub fn seed_from_store(
        &self,
        conn: keel_store::sql::Db<'_>,
    ) -> Result<usize, keel_store::StoreError> {
        let now = now_ms();
        let mut n = 0;
        for b in &self.cfg.budgets {
            let span = b.window.span(now);
            for (v, spent) in
                keel_store::spend::spend_by_scope(conn, &b.scope, span.start_ms, span.end_ms)?
            {
                let id = format!("cfg:{}|{}|{}", b.name, v, span.label);
                self.backend.seed(
                    &BucketSpec {
                        id,
                        limit: None,
                        window_end_ms: span.end_ms,
                        source: None,
                    },
                    spent,
                );
                n += 1;
            }
        }
        for k in self.keys.load().entries() {
            let Some((_, window)) = k.budget else {
                continue;
            };
            let span = window.span(now);
            let scope = Scope {
                kind: ScopeKind::Key,
                value: Some(k.id.clone()),
            };
            for (_, spent) in
                keel_store::spend::spend_by_scope(conn, &scope, span.start_ms, span.end_ms)?
            {
                let id = key_bucket(&k.id, &span.label);
                self.backend.seed(
                    &BucketSpec {
                        id,
                        limit: None,
                        window_end_ms: span.end_ms,
                        source: None,
                    },
                    spent,
                );
                n += 1;
            }
        }
        Ok(n)
    }

    /// The use of budget `name` for scope value `value` ("" for global) now.
    pub async fn budget_use(
        &self,
        name: &str,
        value: &str,
        now_ms: i64,
    ) -> Result<Option<BudgetUse>, String> {
        let Some(b) = self.cfg.budgets.iter().find(|b| b.name == name) else {
            return Ok(None);
        };
        if b.scope.value.as_deref().is_some_and(|v| v != value) {
            return Ok(None);
        }
        let span = b.window.span(now_ms);
        let id = format!("cfg:{}|{}|{}", b.name, value, span.label);
        let (spent, reserved) = self.backend.usage(&[id]).await.map_err(|e| e.0)?[0];
        Ok(Some(BudgetUse {
            budget: b.name.clone(),
            scope: scope_string(b.scope.kind, value),
            window: span.label,
            spent,
            reserved,
            limit: b.limit,
            hard: b.mode == BudgetMode::Hard,
        }))
    }

    /// Every budget bucket of the current windows this gateway has seen (fixed-scope
    /// budgets always) and every key's own budget, with its live use.
    pub async fn all_budget_use(&self) -> Result<Vec<BudgetUse>, String> {
        let now = now_ms();
        let mut wanted: Vec<(String, String)> = Vec::new();
        for b in &self.cfg.budgets {
            if b.scope.kind == ScopeKind::Global || b.scope.value.is_some() {
                wanted.push((b.name.clone(), b.scope.value.clone().unwrap_or_default()));
            }
        }
        for e in self.seen.iter() {
            let (i, v) = e.value();
            if let Some(b) = self.cfg.budgets.get(*i) {
                if !wanted.iter().any(|(n, x)| n == &b.name && x == v) {
                    wanted.push((b.name.clone(), v.clone()));
                }
            }
        }
        let mut out = Vec::new();
        for (name, v) in wanted {
            if let Some(u) = self.budget_use(&name, &v, now).await? {
                out.push(u);
            }
        }
        // Keys' own budgets (`keel keys create --budget`), for keys still in force.
        let keys: Vec<(String, Nanos, Window)> = self
            .keys
            .load()
            .entries()
            .filter(|k| !k.revoked && k.expires_at_ms.is_none_or(|e| e > now))
            .filter_map(|k| k.budget.map(|(limit, w)| (k.id.clone(), limit, w)))
            .collect();
        for (id, limit, window) in keys {
            let span = window.span(now);
            let bucket = key_bucket(&id, &span.label);
            let (spent, reserved) = self.backend.usage(&[bucket]).await.map_err(|e| e.0)?[0];
            out.push(BudgetUse {
                budget: format!("key {id}"),
                scope: format!("key={id}"),
                window: span.label,
                spent,
                reserved,
                limit,
                hard: true,
            });
        }
        out.sort_by(|a, b| (&a.budget, &a.scope).cmp(&(&b.budget, &b.scope)));
        Ok(out)
    }

    /// Housekeeping: forget ended windows (call every minute or so).
    pub fn tick(&self) {
        let now = now_ms();
        self.backend.prune(now);
        self.downgraded.retain(|_, end| *end > now);
    }
}

impl Governor {
    /// The store's recorded spend of each bucket in `missing` (others: 0), read off the
    /// async workers. Without a store (tests, eval), this replica's start-up seeds.
    pub(crate) async fn spend_from_store(
        &self,
        buckets: &[BucketSpec],
        missing: &[usize],
    ) -> Result<Vec<Nanos>, crate::backend::BackendError> {
        let mut seeds = vec![Nanos(0); buckets.len()];
        let Some(store) = self.store.get().cloned() else {
            if let Backend::Redis(r) = &self.backend {
                for &i in missing {
                    if let Some(b) = buckets.get(i) {
                        seeds[i] = r.seed_of(&b.id);
                    }
                }
            }
            return Ok(seeds);
        };
        let asks: Vec<(usize, crate::backend::SpendSource, i64)> = missing
            .iter()
            .filter_map(|&i| {
                let b = buckets.get(i)?;
                Some((i, b.source.clone()?, b.window_end_ms))
            })
            .collect();
        let found = tokio::task::spawn_blocking(move || {
            let conn = store.conn()?;
            let mut out = Vec::with_capacity(asks.len());
            for (i, src, end) in asks {
                let rows = keel_store::spend::spend_by_scope(&conn, &src.scope, src.start_ms, end)?;
                out.push((i, Nanos(rows.iter().map(|(_, n)| n.0).sum())));
            }
            Ok::<_, keel_store::StoreError>(out)
        })
        .await
        .map_err(|e| crate::backend::BackendError(format!("re-seeding a budget: {e}")))?
        .map_err(|e| {
            crate::backend::BackendError(format!("re-seeding a budget from the store: {e}"))
        })?;
        for (i, spent) in found {
            seeds[i] = spent;
            self.stats.reseeded.fetch_add(1, Ordering::Relaxed);
        }
        Ok(seeds)
    }

    /// The first refusal of a bucket in its window: an alert (even below the budget's
    /// `alert_at` thresholds, which a refusal may never cross) and an audit entry.
    pub(crate) fn note_first_refusal(
        &self,
        bucket: &BucketSpec,
        m: &BucketMeta,
        spent: Nanos,
        why: &BudgetExhausted,
    ) {
        if self.refusals_noted.contains_key(&bucket.id) {
            return;
        }
        if self.refusals_noted.len() >= MAX_SEEN {
            self.refusals_noted.clear();
        }
        self.refusals_noted.insert(bucket.id.clone(), ());
        let message = format!(
            "the {} budget `{}` ({}) refused its first call of the window ({}): {}",
            m.window.as_str(),
            m.name,
            m.scope,
            m.window_label,
            why
        );
        self.alert(AlertNotice {
            source: "budget",
            name: m.name.clone(),
            scope: m.scope.clone(),
            state: AlertState::Firing,
            value: Some(spent.0 as f64 / m.limit.0.max(1) as f64),
            threshold: None,
            message: message.clone(),
            dedupe_key: format!("budget-refused|{}", bucket.id),
            to: m.to.clone(),
            repeat: None,
            at_ms: now_ms(),
            incident: None,
        });
        if let (Some(store), Ok(rt)) = (
            self.store.get().cloned(),
            tokio::runtime::Handle::try_current(),
        ) {
            let (target, window) = (m.scope.clone(), m.window_label.clone());
            let name = m.name.clone();
            rt.spawn_blocking(move || {
                let event = keel_store::audit::NewAuditEvent {
                    actor: "keel",
                    action: "budget.refused",
                    target: &target,
                    from_value: None,
                    to_value: Some(name),
                    reason: Some(&message),
                    details: Some(serde_json::json!({"window": window})),
                };
                let r = store.conn().map_err(|e| e.to_string()).and_then(|c| {
                    keel_store::audit::record_audit(&c, now_ms(), &event).map_err(|e| e.to_string())
                });
                if let Err(e) = r {
                    tracing::warn!(error = %e, "cannot audit a budget's first refusal");
                }
            });
        }
    }
}
