//! The rotation plan: a pure function of (keys, policy, now) that says which lifecycle steps are
//! due. [`super::KeyRing`] carries a plan out.
//!
//! The ring holds one chain of keys per algorithm in use (records grouped by `alg`), each rotated
//! on the same policy. The primary algorithm signs access tokens; others (RS256 for OpenID Connect
//! ID tokens) sign what needs them. A chain whose algorithm leaves the policy is wound down: its
//! pending key is withdrawn (it never signed), its active key stops signing and retires
//! `retire_after` later, like any key whose successor took over.

use crate::clock::UnixSeconds;
use crate::spec::{KeyPolicy, SigningAlgorithm, Spec};
use crate::store::{KeyRecord, KeyState};

/// What the rotation policy needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationPolicy {
    /// The algorithm of access tokens: its chain's active key is [`super::KeySnapshot::active`].
    pub primary: SigningAlgorithm,
    /// Further algorithms that need a chain of their own (RS256 for ID tokens), in the order their
    /// keys are generated; never the primary, never twice (see [`RotationPolicy::with_extra`]).
    pub extra: Vec<SigningAlgorithm>,
    /// How long a key signs.
    pub rotate_every: i64,
    /// How long a new key is published before it signs.
    pub publish_ahead: i64,
    /// How long an old key stays published after its last signature.
    pub retire_after: i64,
}

impl RotationPolicy {
    /// The policy of a spec: its algorithms are [`Spec::signing_algorithms`].
    pub fn from_spec(spec: &Spec) -> Self {
        let algorithms = spec.signing_algorithms();
        let (primary, extra) = algorithms.split_first().map_or((spec.tokens.algorithm, &[][..]), |(p, e)| (*p, e));
        Self::new(primary, &spec.keys).with_extra(extra.iter().copied())
    }

    /// A policy with one chain, of `primary`, from the `[keys]` section.
    pub fn new(primary: SigningAlgorithm, keys: &KeyPolicy) -> Self {
        Self {
            primary,
            extra: Vec::new(),
            rotate_every: keys.rotate_every.as_i64(),
            publish_ahead: keys.publish_ahead.as_i64(),
            retire_after: keys.retire_after.as_i64(),
        }
    }

    /// The same policy with a chain for each of `extra` too (the primary and repeats are skipped).
    #[must_use]
    pub fn with_extra(mut self, extra: impl IntoIterator<Item = SigningAlgorithm>) -> Self {
        for alg in extra {
            if alg != self.primary && !self.extra.contains(&alg) {
                self.extra.push(alg);
            }
        }
        self
    }

    /// Every algorithm in use, the primary first.
    pub fn algorithms(&self) -> impl Iterator<Item = SigningAlgorithm> + '_ {
        std::iter::once(self.primary).chain(self.extra.iter().copied())
    }

    /// Whether `alg` has a chain under this policy.
    pub fn uses(&self, alg: SigningAlgorithm) -> bool {
        self.algorithms().any(|a| a == alg)
    }
}

/// One step of a rotation plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotationStep {
    /// The chain of `alg` has no key: generate one that signs at once (nothing it could sign had
    /// a key before, so no verifier's cached key set can lack it).
    GenerateActive {
        /// The chain's algorithm.
        alg: SigningAlgorithm,
    },
    /// Generate the successor in the chain of `alg`, published now and signing from
    /// `activates_at`.
    GeneratePending {
        /// The chain's algorithm.
        alg: SigningAlgorithm,
        /// When it starts signing.
        activates_at: UnixSeconds,
    },
    /// The pending key's time has come: it signs from now.
    Activate {
        /// The pending key.
        kid: String,
    },
    /// The active key stops signing (its successor was activated in the same plan, or its
    /// algorithm left the policy).
    Deactivate {
        /// The previously active key.
        kid: String,
    },
    /// The retiring key has outlived every token it signed: unpublish it, erase its private half.
    Retire {
        /// The retiring key.
        kid: String,
    },
    /// A pending key whose algorithm left the policy before it signed: unpublish it, erase its
    /// private half (no token can name it).
    Withdraw {
        /// The pending key.
        kid: String,
    },
}

/// The key that signs access tokens in `keys`: the primary chain's active key; while a new primary
/// chain waits for its first key to activate (the spec's algorithm changed), the active key of
/// another chain, the oldest first (the previous primary's, whose tokens verifiers already know).
pub(super) fn access_signer(keys: &[KeyRecord], primary: SigningAlgorithm) -> Option<&KeyRecord> {
    let active = keys.iter().filter(|k| k.state == KeyState::Active);
    let primary_key = active.clone().find(|k| k.alg == primary);
    primary_key.or_else(|| active.min_by_key(|k| (k.activates_at, k.created_at)))
}

/// What to do to the key ring at `now`. Pure: the same inputs always give the same plan.
///
/// Each algorithm of the policy gets its chain planned on its own, primary first, then the chains
/// of algorithms that left the policy are wound down, then retiring keys of every chain retire.
pub fn plan_rotation(keys: &[KeyRecord], policy: &RotationPolicy, now: UnixSeconds) -> Vec<RotationStep> {
    let mut steps = Vec::new();
    let fallback = keys.iter().find(|k| k.state == KeyState::Active && k.alg != policy.primary);
    for alg in policy.algorithms() {
        let chain: Vec<&KeyRecord> = keys.iter().filter(|k| k.alg == alg).collect();
        // While the primary chain starts, another chain's active key signs access tokens, so the
        // new chain can be published ahead like any successor.
        let covered = alg == policy.primary && fallback.is_some();
        plan_chain(&chain, alg, covered, policy, now, &mut steps);
    }
    let primary_signs = keys.iter().any(|k| k.state == KeyState::Active && k.alg == policy.primary)
        || steps.iter().any(|s| match s {
            RotationStep::GenerateActive { alg } => *alg == policy.primary,
            RotationStep::Activate { kid } => keys.iter().any(|k| &k.kid == kid && k.alg == policy.primary),
            _ => false,
        });
    for key in keys.iter().filter(|k| !policy.uses(k.alg)) {
        match key.state {
            KeyState::Pending => steps.push(RotationStep::Withdraw { kid: key.kid.clone() }),
            // Keeps signing access tokens until the new primary chain's first key does.
            KeyState::Active if primary_signs => steps.push(RotationStep::Deactivate { kid: key.kid.clone() }),
            _ => {}
        }
    }
    for key in keys.iter().filter(|k| k.state == KeyState::Retiring) {
        let last_signature = key.deactivated_at.unwrap_or(key.activates_at);
        if now >= last_signature.saturating_add(policy.retire_after) {
            steps.push(RotationStep::Retire { kid: key.kid.clone() });
        }
    }
    steps
}

/// The steps due in the chain of `alg`. `covered`: another chain's active key signs in this
/// chain's stead until its first key activates.
fn plan_chain(
    chain: &[&KeyRecord],
    alg: SigningAlgorithm,
    covered: bool,
    policy: &RotationPolicy,
    now: UnixSeconds,
    steps: &mut Vec<RotationStep>,
) {
    let active = chain.iter().find(|k| k.state == KeyState::Active);
    let pending = chain.iter().find(|k| k.state == KeyState::Pending);
    match (active, pending) {
        (None, None) if covered => {
            steps.push(RotationStep::GeneratePending { alg, activates_at: now.saturating_add(policy.publish_ahead) });
        }
        (None, None) => steps.push(RotationStep::GenerateActive { alg }),
        (None, Some(p)) if covered && p.activates_at > now => {}
        // Its time has come, or (after manual tampering) nothing else can sign in its stead.
        (None, Some(p)) => steps.push(RotationStep::Activate { kid: p.kid.clone() }),
        (Some(a), Some(p)) if p.activates_at <= now => {
            steps.push(RotationStep::Deactivate { kid: a.kid.clone() });
            steps.push(RotationStep::Activate { kid: p.kid.clone() });
        }
        (Some(a), None) => {
            let due = a.activates_at.saturating_add(policy.rotate_every);
            if now >= due.saturating_sub(policy.publish_ahead) {
                let activates_at = now.saturating_add(policy.publish_ahead).max(due);
                steps.push(RotationStep::GeneratePending { alg, activates_at });
            }
        }
        (Some(_), Some(_)) => {}
    }
}
