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
        conn: &keel_store::Connection,
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
    /// budgets always), with its live use.
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
