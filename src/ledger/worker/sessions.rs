//! Session changes and login attempts: they touch only the cache, and are done at once, ahead
//! of the batch they came with.

use chrono::Utc;

use super::Worker;
use crate::ledger::{Command, Job, LedgerError, Outcome, SessionOp};

impl Worker {
    /// Executes session changes at once (they touch only the cache) and returns the rest.
    pub(super) fn session_jobs(&mut self, jobs: Vec<Job>) -> Vec<Job> {
        let mut rest = Vec::with_capacity(jobs.len());
        for job in jobs {
            match job.cmd {
                Command::Session(op) => {
                    let done = |r: Result<(), crate::cache::CacheError>| r.map(|()| Outcome::Done);
                    let result = match op {
                        SessionOp::Open {
                            token_hash,
                            session,
                        } => done(self.cache.put_session(&token_hash, &session)),
                        SessionOp::Close { token_hash } => {
                            done(self.cache.remove_session(&token_hash))
                        }
                        SessionOp::Prune => {
                            done(self.cache.prune_sessions(Utc::now(), |_| true).map(|_| ()))
                        }
                        SessionOp::End { token_hashes } => done(
                            token_hashes
                                .iter()
                                .try_for_each(|k| self.cache.remove_session(k)),
                        ),
                        SessionOp::Attempt { scopes, window } => {
                            self.attempt(&scopes, window, Utc::now())
                        }
                        SessionOp::TakeBack { attempts, clear } => done(
                            attempts
                                .iter()
                                .try_for_each(|(scope, max, since)| {
                                    match crate::domain::lockout::take_back(
                                        self.cache.strikes(scope)?,
                                        *max,
                                        *since,
                                    ) {
                                        Some(s) => self.cache.put_strikes(scope, &s),
                                        None => self.cache.clear_strikes(scope),
                                    }
                                })
                                .and_then(|()| match &clear {
                                    Some(scope) => self.cache.clear_strikes(scope),
                                    None => Ok(()),
                                }),
                        ),
                        #[cfg(test)]
                        SessionOp::PanicForTest => panic!("a bug outside a command, for a test"),
                    };
                    let _ = job.reply.send(result.map_err(LedgerError::from));
                }
                cmd => rest.push(Job {
                    actor: job.actor,
                    cmd,
                    reply: job.reply,
                }),
            }
        }
        rest
    }

    /// A login's attempt: refused if a scope is locked, else counted against every scope.
    fn attempt(
        &self,
        scopes: &[(String, u32)],
        window: chrono::Duration,
        now: chrono::DateTime<Utc>,
    ) -> Result<Outcome, crate::cache::CacheError> {
        let mut counts = Vec::with_capacity(scopes.len());
        for (scope, _) in scopes {
            let stored = self.cache.strikes(scope)?;
            // Counted by a clock that has gone back since: kept to the window from now.
            let current = crate::domain::lockout::settle(stored.clone(), now, window);
            if current != stored
                && let Some(s) = &current
            {
                self.cache.put_strikes(scope, s)?;
            }
            if let Some(until) = crate::domain::lockout::locked_until(current.as_ref(), now) {
                return Ok(Outcome::Locked {
                    scope: scope.clone(),
                    until,
                });
            }
            counts.push(current);
        }
        let mut since = Vec::with_capacity(scopes.len());
        for ((scope, max), current) in scopes.iter().zip(counts) {
            let s = crate::domain::lockout::strike(current, now, *max, window);
            self.cache.put_strikes(scope, &s)?;
            since.push(s.since);
        }
        Ok(Outcome::Attempted { since })
    }
}
