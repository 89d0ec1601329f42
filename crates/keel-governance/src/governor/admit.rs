//! Admitting one call: spike blocks, then its rate limits and budget reservation in one
//! ask of the limits backend (one round trip to Redis; a second only when Redis lost a
//! budget bucket and it is re-seeded from the store), and what happens when the limits
//! backend cannot be reached.

use super::*;
use crate::backend::{Admit, Ask, BudgetAsk, SpendSource};

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
        // The specs go to the backend; what each one is, for headers and messages.
        let (specs, labels): (Vec<RateSpec>, Vec<(RateKind, String)>) = rates
            .into_iter()
            .map(|(spec, kind, scope)| (spec, (kind, scope)))
            .unzip();
        // A call falling in budgets reserves its worst case when it is priced (nothing
        // otherwise: what its ticket holds).
        let priced = (!buckets.is_empty()).then_some(price).flatten();
        let reserved = priced.map_or(Nanos(0), |p| get_est().cost(&p));
        let cap_output = if hard && priced.is_some() && get_est().output_defaulted {
            u32::try_from(get_est().output_tokens).ok()
        } else {
            None
        };
        let id = reservation_id(request_id);
        let ask = |seeds| Ask {
            rates: &specs,
            budget: priced.map(|_| BudgetAsk {
                buckets: &buckets,
                amount: reserved,
                reservation: &id,
                hold: self.hold,
                seeds,
            }),
            now_ms: now,
        };
        let asked = !specs.is_empty() || priced.is_some();
        let mut outcome = if asked {
            self.backend.admit(ask(None)).await
        } else {
            Ok(Admit::Admitted(Vec::new()))
        };
        if let Ok(Admit::Missing(missing)) = &outcome {
            // The shared ledger lost these buckets: start them again from what the
            // store recorded, never from zero.
            outcome = match self.spend_from_store(&buckets, missing).await {
                Ok(seeds) => self.backend.admit(ask(Some(&seeds))).await,
                Err(e) => Err(e),
            };
        }
        let mut headers = RateHeaders::default();
        let mut charged_tokens: Vec<RateSpec> = Vec::new();
        match outcome {
            Ok(Admit::Admitted(states)) => {
                if asked {
                    self.backend_ok();
                }
                for ((spec, (kind, _)), st) in specs.iter().zip(&labels).zip(states) {
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
            Ok(Admit::RateRefused { index, why }) => {
                self.backend_ok();
                let (spec, (kind, scope)) = (&specs[index], &labels[index]);
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
            Ok(Admit::Blocked {
                index,
                spent,
                reserved: held,
            }) => {
                self.backend_ok();
                let m = &metas[index];
                let exhausted = BudgetExhausted {
                    budget: m.name.clone(),
                    scope: m.scope.clone(),
                    window: m.window.as_str().to_string(),
                    spent: spent.saturating_add(held).to_dollar_string(),
                    limit: m.limit.to_dollar_string(),
                    needed: reserved.to_dollar_string(),
                };
                self.note_first_refusal(&buckets[index], m, spent, &exhausted);
                return Err(GovError::BudgetExceeded(Box::new(exhausted)));
            }
            Ok(Admit::Missing(_)) => self
                .backend_failed("the limits backend lost a budget bucket twice in one admission")?,
            Err(e) => self.backend_failed(&e.0)?,
        }
        let tokens = est.map_or(0, |e| e.total_tokens());
        let ticket = (!buckets.is_empty() || !charged_tokens.is_empty()).then(|| {
            Ticket::new(
                self.clone(),
                buckets,
                metas,
                id,
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
}
