//! Restart policies: whether an ended instance is started again, and after
//! how long (1 s, 2 s, 4 s ... up to 60 s while it keeps failing quickly).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use vessel_api::{ExitReason, ExitStatus, RestartPolicy};

use super::Supervisor;

/// A run this long resets the backoff.
const STABLE_RUN: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Whether `policy` restarts an instance that ended with `exit`. A stop or
/// kill request, or a failed start, is never undone.
pub fn should_restart(policy: RestartPolicy, exit: &ExitStatus) -> bool {
    let failed = match exit.reason {
        ExitReason::Stopped | ExitReason::Killed | ExitReason::StartFailed => return false,
        ExitReason::Crashed | ExitReason::Oom | ExitReason::Lost => true,
        ExitReason::Exited => exit.code != Some(0),
        ExitReason::PoweredOff => false,
    };
    match policy {
        RestartPolicy::No => false,
        RestartPolicy::OnFailure => failed,
        RestartPolicy::Always => true,
    }
}

/// The wait before the next start after `failures` quick failures in a row.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.min(6)).min(MAX_BACKOFF)
}

impl Supervisor {
    /// Apply the restart policy to an instance whose process has ended.
    pub(super) fn after_exit(self: &Arc<Self>, name: &str, exit: &ExitStatus, ran: Duration) {
        let Ok(instance) = self.store.get(name) else {
            return;
        };
        // The count of quick failures in a row is kept in the store, so a
        // daemon restart does not reset the backoff.
        let stored = self.store.restart_failures(name).unwrap_or(0);
        if !should_restart(instance.restart_policy, exit) {
            if stored != 0
                && let Err(e) = self.store.set_restart_failures(name, 0)
            {
                tracing::warn!(name, error = %e, "resetting the restart backoff");
            }
            return;
        }
        let failures = if ran >= STABLE_RUN { 0 } else { stored };
        if let Err(e) = self
            .store
            .set_restart_failures(name, failures.saturating_add(1))
        {
            tracing::warn!(name, error = %e, "recording the restart backoff");
        }
        tracing::info!(
            name,
            policy = instance.restart_policy.as_str(),
            "restarting after its exit"
        );
        self.schedule_restart(name, backoff(failures));
    }

    /// After a daemon restart: an instance that ended and was waiting for
    /// its policy's restart when the previous daemon went away is
    /// scheduled again, after the backoff its stored failure count gives.
    pub(super) fn resume_restart(self: &Arc<Self>, instance: &vessel_api::Instance) {
        let Some(exit) = &instance.exit else {
            return;
        };
        if instance.state.is_active() || !should_restart(instance.restart_policy, exit) {
            return;
        }
        // A count of 0: the user's start, stop, kill cancelled it.
        let failures = self.store.restart_failures(&instance.name).unwrap_or(0);
        if failures == 0 {
            return;
        }
        tracing::info!(name = %instance.name, failures, "resuming a pending restart");
        self.schedule_restart(&instance.name, backoff(failures.saturating_sub(1)));
    }

    /// Start `name` again after `delay`, unless a user's request cancels it.
    fn schedule_restart(self: &Arc<Self>, name: &str, delay: Duration) {
        let token = self.next_token.fetch_add(1, Ordering::SeqCst);
        self.lock_pending().insert(name.to_string(), token);
        tracing::debug!(
            name,
            delay_ms = delay.as_millis() as u64,
            "restart scheduled"
        );
        let sup = Arc::clone(self);
        let name = name.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            // The token is checked and the start made under the instance's
            // lock: a user's stop either cancels it first or stops what
            // it started.
            let _guard = sup.lock(&name).await;
            {
                let mut pending = sup.lock_pending();
                if pending.get(&name) != Some(&token)
                    || sup.detached.load(std::sync::atomic::Ordering::SeqCst)
                {
                    return; // cancelled by a user's request
                }
                pending.remove(&name);
            }
            match sup.start_held(&name).await {
                Ok(_) => {
                    if let Err(e) = sup.store.bump_restart_count(&name) {
                        tracing::warn!(%name, error = %e, "counting the restart");
                    }
                }
                Err(e) => tracing::warn!(%name, error = %e, "restart failed"),
            }
        });
    }

    /// Whether the restart policy has a start of `name` scheduled.
    pub fn restart_pending(&self, name: &str) -> bool {
        self.lock_pending().contains_key(name)
    }

    /// Cancel a restart the policy scheduled; true if there was one.
    /// A user's request also resets the backoff (and so no restart is
    /// resumed by the next daemon).
    pub(super) fn cancel_restart(&self, name: &str) -> bool {
        let cancelled = self.lock_pending().remove(name).is_some();
        if self.store.restart_failures(name).unwrap_or(0) != 0
            && let Err(e) = self.store.set_restart_failures(name, 0)
        {
            tracing::warn!(name, error = %e, "resetting the restart backoff");
        }
        cancelled
    }

    pub(super) fn lock_pending(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, u64>> {
        self.pending_restarts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(reason: ExitReason, code: Option<i32>) -> ExitStatus {
        ExitStatus {
            reason,
            code,
            signal: None,
            message: None,
        }
    }

    #[test]
    fn policies() {
        use ExitReason::*;
        use RestartPolicy::*;
        let cases = [
            (No, Crashed, None, false),
            (OnFailure, Crashed, Some(3), true),
            (OnFailure, PoweredOff, Some(0), false),
            (OnFailure, Exited, Some(0), false),
            (OnFailure, Exited, Some(1), true),
            (OnFailure, Lost, None, true),
            (OnFailure, Stopped, None, false),
            (Always, PoweredOff, Some(0), true),
            (Always, Exited, Some(0), true),
            (Always, Killed, None, false),
            (Always, StartFailed, None, false),
        ];
        for (policy, reason, code, want) in cases {
            assert_eq!(
                should_restart(policy, &exit(reason, code)),
                want,
                "{policy:?} {reason:?} {code:?}"
            );
        }
    }

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(32));
        assert_eq!(backoff(6), Duration::from_secs(60));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(60));
    }
}
