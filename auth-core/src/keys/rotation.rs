//! The rotation plan: a pure function of (keys, policy, now) that says which lifecycle steps are
//! due. [`super::KeyRing`] carries a plan out.

use crate::clock::UnixSeconds;
use crate::spec::{KeyPolicy, SigningAlgorithm, Spec};
use crate::store::{KeyRecord, KeyState};

/// What the rotation policy needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationPolicy {
    /// Algorithm of newly generated keys.
    pub algorithm: SigningAlgorithm,
    /// How long a key signs.
    pub rotate_every: i64,
    /// How long a new key is published before it signs.
    pub publish_ahead: i64,
    /// How long an old key stays published after its last signature.
    pub retire_after: i64,
}

impl RotationPolicy {
    /// The policy of a spec.
    pub fn from_spec(spec: &Spec) -> Self {
        Self::new(spec.tokens.algorithm, &spec.keys)
    }

    /// A policy from the `[keys]` section and the signing algorithm.
    pub fn new(algorithm: SigningAlgorithm, keys: &KeyPolicy) -> Self {
        Self {
            algorithm,
            rotate_every: keys.rotate_every.as_i64(),
            publish_ahead: keys.publish_ahead.as_i64(),
            retire_after: keys.retire_after.as_i64(),
        }
    }
}

/// One step of a rotation plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotationStep {
    /// No key exists: generate one that signs at once (no verifier can have cached a JWKS yet).
    GenerateActive,
    /// Generate the successor, published now and signing from `activates_at`.
    GeneratePending {
        /// When it starts signing.
        activates_at: UnixSeconds,
    },
    /// The pending key's time has come: it signs from now.
    Activate {
        /// The pending key.
        kid: String,
    },
    /// The active key stops signing (its successor was activated in the same plan).
    Deactivate {
        /// The previously active key.
        kid: String,
    },
    /// The retiring key has outlived every token it signed: unpublish it, erase its private half.
    Retire {
        /// The retiring key.
        kid: String,
    },
}

/// What to do to the key ring at `now`. Pure: the same inputs always give the same plan.
pub fn plan_rotation(keys: &[KeyRecord], policy: &RotationPolicy, now: UnixSeconds) -> Vec<RotationStep> {
    let active = keys.iter().find(|k| k.state == KeyState::Active);
    let pending = keys.iter().find(|k| k.state == KeyState::Pending);
    let mut steps = Vec::new();
    match (active, pending) {
        (None, None) => steps.push(RotationStep::GenerateActive),
        // Only reachable after manual tampering: never leave the ring without a signer.
        (None, Some(p)) => steps.push(RotationStep::Activate { kid: p.kid.clone() }),
        (Some(a), Some(p)) if p.activates_at <= now => {
            steps.push(RotationStep::Deactivate { kid: a.kid.clone() });
            steps.push(RotationStep::Activate { kid: p.kid.clone() });
        }
        (Some(a), None) => {
            let due = a.activates_at.saturating_add(policy.rotate_every);
            let algorithm_changed = a.alg != policy.algorithm;
            if algorithm_changed || now >= due.saturating_sub(policy.publish_ahead) {
                let earliest = now.saturating_add(policy.publish_ahead);
                let activates_at = if algorithm_changed { earliest } else { earliest.max(due) };
                steps.push(RotationStep::GeneratePending { activates_at });
            }
        }
        (Some(_), Some(_)) => {}
    }
    for key in keys.iter().filter(|k| k.state == KeyState::Retiring) {
        let last_signature = key.deactivated_at.unwrap_or(key.activates_at);
        if now >= last_signature.saturating_add(policy.retire_after) {
            steps.push(RotationStep::Retire { kid: key.kid.clone() });
        }
    }
    steps
}
