//! Admitting one call: spike blocks, rate limits, then budget reservations, and what
//! happens when the limits backend cannot be reached.

use super::*;
use crate::backend::SpendSource;

impl Governor {
    /// Rate limits, then budgets; see the module doc.
    pub async fn admit(
        self: &Arc<Self>,
        key: Option<&KeyEntry>,
        cs: CallScope<'_>,
        price: Option<ModelPrice>,
        estimate: &(dyn Fn() -> Estimate + Sync),
        request_id: &str,
    ) -> Result<Admission, GovError> {
        let now = now_ms();
        if let Some(d) = &self.spikes {
            if d.settings().action == SpikeAction::Block {
                for s in self.spike_scopes(&cs) {
                    if let Some(until) = d.flagged(&s, now) {
                        return Err(GovError::SpikeBlocked {
                            scope: s,
                            detail: format!("z ≥ {}", d.settings().z),
                            until: rfc3339(until),
                        });
                    }
                }
            }
        }
        let mut est: Option<Estimate> = None;
        let mut get_est = || *est.get_or_insert_with(estimate);

        // Rate limits.
        let mut rates: Vec<(RateSpec, RateKind, String)> = Vec::new();
        if let Some(k) = key {
            if let Some(rpm) = k.rpm {
                rates.push((
                    rate(format!("key:{}|rpm", k.id), rpm.into(), 1),
                    RateKind::Requests,
                    format!("key {}", k.id),
                ));
            }
            if let Some(tpm) = k.tpm {
                let cost = get_est().total_tokens();
                rates.push((
                    rate(format!("key:{}|tpm", k.id), tpm, cost),
                    RateKind::Tokens,
                    format!("key {}", k.id),
                ));
            }
        }
        for (i, r) in self.cfg.rate_limits.iter().enumerate() {
            let Some(v) = r.scope.applies(&cs) else {
                continue;
            };
            let scope = scope_string(r.scope.kind, v);
            if let Some(rpm) = r.rpm {
                rates.push((
                    rate(format!("cfg{i}:{scope}|rpm"), rpm.get().into(), 1),
                    RateKind::Requests,
                    scope.clone(),
                ));
            }
            if let Some(tpm) = r.tpm {
                let cost = get_est().total_tokens();
                rates.push((
                    rate(format!("cfg{i}:{scope}|tpm"), tpm.get(), cost),
                    RateKind::Tokens,
                    scope,
                ));
            }
        }
        let mut headers = RateHeaders::default();
        let mut charged_tokens: Vec<RateSpec> = Vec::new();
        if !rates.is_empty() {
            let specs: Vec<RateSpec> = rates.iter().map(|(s, _, _)| s.clone()).collect();
            match self.backend.acquire(&specs, now.saturating_mul(1000)).await {
                Ok(Acquire::Admitted(states)) => {
                    self.backend_ok();
                    for ((spec, kind, _), st) in rates.iter().zip(states) {
                        let slot = match kind {
                            RateKind::Requests => &mut headers.requests,
                            RateKind::Tokens => {
                                charged_tokens.push(spec.clone());
                                &mut headers.tokens
                            }
                        };
                        if slot.is_none_or(|s| st.remaining < s.remaining) {
                            *slot = Some(st);
                        }
                    }
                }
                Ok(Acquire::Refused { index, why }) => {
                    self.backend_ok();
                    let (spec, kind, scope) = &rates[index];
                    let unit = match kind {
                        RateKind::Requests => "requests",
                        RateKind::Tokens => "tokens",
                    };
                    let limit = format!("{} {unit} per minute", spec.per_minute);
                    return Err(match why {
                        Refusal::Wait(retry_after) => GovError::RateLimited {
                            limit,
                            scope: scope.clone(),
                            retry_after,
                        },
                        Refusal::TooLarge => GovError::TooLargeForLimit {
                            limit,
                            scope: scope.clone(),
                            needed: spec.cost,
                        },
                    });
                }
                Err(e) => self.backend_failed(&e.0)?,
            }
        }

        // Budgets.
        let mut buckets: Vec<BucketSpec> = Vec::new();
        let mut metas: Vec<BucketMeta> = Vec::new();
        for (i, b) in self.cfg.budgets.iter().enumerate() {
            let Some(v) = b.scope.applies(&cs) else {
                continue;
            };
            let span = b.window.span(now);
            let id = format!("cfg:{}|{}|{}", b.name, v, span.label);
            if self.seen.len() < MAX_SEEN {
                self.seen.entry(id.clone()).or_insert((i, v.to_string()));
            }
            buckets.push(BucketSpec {
                id,
                limit: (b.mode == BudgetMode::Hard).then_some(b.limit),
                window_end_ms: span.end_ms,
                source: Some(SpendSource {
                    scope: Scope {
                        kind: b.scope.kind,
                        value: (b.scope.kind != ScopeKind::Global).then(|| v.to_string()),
                    },
                    start_ms: span.start_ms,
                }),
            });
            metas.push(BucketMeta {
                name: b.name.clone(),
                scope: scope_string(b.scope.kind, v),
                limit: b.limit,
                window: b.window,
                window_label: span.label,
                alert_at: b.alert_at.clone(),
                downgrade_at: b.downgrade_at,
                to: b.alert_to.clone(),
            });
        }
        if let Some((k, (limit, window))) = key.and_then(|k| k.budget.map(|b| (k, b))) {
            let span = window.span(now);
            buckets.push(BucketSpec {
                id: key_bucket(&k.id, &span.label),
                limit: Some(limit),
                window_end_ms: span.end_ms,
                source: Some(SpendSource {
                    scope: Scope {
                        kind: ScopeKind::Key,
                        value: Some(k.id.clone()),
                    },
                    start_ms: span.start_ms,
                }),
            });
            metas.push(BucketMeta {
                name: format!("key {}", k.id),
                scope: format!("key={}", k.id),
                limit,
                window,
                window_label: span.label,
                alert_at: vec![0.8, 1.0],
                downgrade_at: None,
                to: vec!["log".into()],
            });
        }
        let hard = buckets.iter().any(|b| b.limit.is_some());
        let mut reserved = Nanos(0);
        let mut cap_output = None;
        if !buckets.is_empty() {
            if let Some(p) = price {
                let e = get_est();
                let amount = e.cost(&p);
                if hard && e.output_defaulted {
                    cap_output = u32::try_from(e.output_tokens).ok();
                }
                let id = reservation_id(request_id);
                let mut reserved_now = self
                    .backend
                    .reserve(&buckets, amount, &id, self.hold, now, None)
                    .await;
                if let Ok(Reserve::Missing(missing)) = &reserved_now {
                    // The shared ledger lost these buckets: start them again from what
                    // the store recorded, never from zero.
                    match self.spend_from_store(&buckets, missing).await {
                        Ok(seeds) => {
                            reserved_now = self
                                .backend
                                .reserve(&buckets, amount, &id, self.hold, now, Some(&seeds))
                                .await;
                        }
                        Err(e) => reserved_now = Err(e),
                    }
                }
                match reserved_now {
                    Ok(Reserve::Missing(_)) => self.backend_failed(
                        "the limits backend lost a budget bucket twice in one admission",
                    )?,
                    Ok(Reserve::Admitted) => {
                        self.backend_ok();
                        reserved = amount;
                        return Ok(Admission {
                            ticket: Some(Ticket::new(
                                self.clone(),
                                buckets,
                                metas,
                                id,
                                reserved,
                                charged_tokens,
                                e.total_tokens(),
                            )),
                            rate: headers,
                            cap_output,
                        });
                    }
                    Ok(Reserve::Blocked {
                        index,
                        spent,
                        reserved: held,
                    }) => {
                        self.backend_ok();
                        self.give_back_tokens(&charged_tokens, e.total_tokens())
                            .await;
                        let m = &metas[index];
                        let exhausted = BudgetExhausted {
                            budget: m.name.clone(),
                            scope: m.scope.clone(),
                            window: m.window.as_str().to_string(),
                            spent: spent.saturating_add(held).to_dollar_string(),
                            limit: m.limit.to_dollar_string(),
                            needed: amount.to_dollar_string(),
                        };
                        self.note_first_refusal(&buckets[index], m, spent, &exhausted);
                        return Err(GovError::BudgetExceeded(Box::new(exhausted)));
                    }
                    Err(e) => self.backend_failed(&e.0)?,
                }
            }
        }
        let tokens = est.map_or(0, |e| e.total_tokens());
        let ticket = (!buckets.is_empty() || !charged_tokens.is_empty()).then(|| {
            Ticket::new(
                self.clone(),
                buckets,
                metas,
                reservation_id(request_id),
                reserved,
                charged_tokens,
                tokens,
            )
        });
        Ok(Admission {
            ticket,
            rate: headers,
            cap_output,
        })
    }

    fn backend_ok(&self) {
        if self.backend_down.swap(false, Ordering::AcqRel) {
            tracing::info!("the limits backend answers again");
            self.alert(backend_notice(
                AlertState::Resolved,
                "the limits backend answers again".into(),
            ));
        }
    }

    /// Fail closed (refuse) or open (admit, count, alert).
    fn backend_failed(&self, why: &str) -> Result<(), GovError> {
        self.stats.backend_errors.fetch_add(1, Ordering::Relaxed);
        if !self.backend_down.swap(true, Ordering::AcqRel) {
            let policy = match self.cfg.limits.on_error {
                FailMode::Closed => "calls are refused (fail_closed)",
                FailMode::Open => "calls are admitted without limits (fail_open)",
            };
            tracing::error!(error = %why, "the limits backend is unreachable; {policy}");
            self.alert(backend_notice(
                AlertState::Firing,
                format!("the limits backend is unreachable ({why}); {policy}"),
            ));
        }
        match self.cfg.limits.on_error {
            FailMode::Closed => Err(GovError::BackendUnavailable(why.to_string())),
            FailMode::Open => {
                self.stats.fail_open_admits.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        }
    }

    async fn give_back_tokens(&self, charged: &[RateSpec], tokens: u64) {
        let now_us = now_ms().saturating_mul(1000);
        for spec in charged {
            let delta = -i64::try_from(tokens).unwrap_or(i64::MAX);
            if let Err(e) = self.backend.adjust(spec, delta, now_us).await {
                tracing::debug!(error = %e, "cannot give tokens back to a rate limit");
            }
        }
    }
}
