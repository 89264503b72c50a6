//! A fault hook for tests: make an actor fail on purpose while handling a message.
//!
//! The supervisor's promise (restart without losing or repeating a record) is only worth
//! something when tested against a real failure in a real process. `LOGGING_SIDECAR_FAULT`
//! (for example `tailer:3,forwarder:2`) makes the named actor stop itself while handling
//! its n-th message of the kind that carries data, dropping that message, exactly as an
//! unexpected failure would. Unset, it costs one integer comparison per message.

use std::cell::Cell;

/// Which actor fails on which message; `None` means never.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultPlan {
    pub tailer: Option<u64>,
    pub enricher: Option<u64>,
    pub forwarder: Option<u64>,
}

impl FaultPlan {
    pub fn parse(text: &str) -> Result<FaultPlan, String> {
        let mut plan = FaultPlan::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (actor, n) = part
                .split_once(':')
                .ok_or_else(|| format!("expected actor:n, got {part:?}"))?;
            let n: u64 = n
                .trim()
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{part:?}: n must be a positive integer"))?;
            match actor.trim() {
                "tailer" => plan.tailer = Some(n),
                "enricher" => plan.enricher = Some(n),
                "forwarder" => plan.forwarder = Some(n),
                other => return Err(format!("unknown actor {other:?}")),
            }
        }
        Ok(plan)
    }
}

/// Counts an actor's messages and says once when the planned one has come.
#[derive(Debug, Default)]
pub struct Fault {
    at: Option<u64>,
    seen: Cell<u64>,
}

impl Fault {
    pub fn new(at: Option<u64>) -> Fault {
        Fault {
            at,
            seen: Cell::new(0),
        }
    }

    /// True exactly once: on the planned message.
    pub fn fires(&self) -> bool {
        match self.at {
            None => false,
            Some(at) => {
                let n = self.seen.get() + 1;
                self.seen.set(n);
                n == at
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_parse_and_fire_once() {
        let plan = FaultPlan::parse("tailer:2, forwarder:1").unwrap();
        assert_eq!(plan.tailer, Some(2));
        assert_eq!(plan.enricher, None);
        let f = Fault::new(plan.tailer);
        assert_eq!(
            (0..4).map(|_| f.fires()).collect::<Vec<_>>(),
            [false, true, false, false]
        );
        assert!(FaultPlan::parse("tailer").is_err());
        assert!(FaultPlan::parse("tailer:0").is_err());
        assert!(FaultPlan::parse("x:1").is_err());
    }
}
