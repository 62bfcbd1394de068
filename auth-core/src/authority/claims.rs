//! Custom claims and who sets them. The spec says per claim who may (`set_by`): `user` claims
//! come with the user's sign-up; `admin` claims (the default, for anything that carries authority:
//! a tenant, a role) only from an operator (`auth-server users set-claim`), a confidential client
//! holding an admin scope (the admin API) or an invitation. A claim that nothing sets takes the
//! spec's `default`.
//!
//! An invitation is a single-use, expiring grant of claims: a random token (256 bits) of which the
//! store keeps only the SHA-256, so a database leak does not leak redeemable invitations. It is
//! redeemed at sign-up (creating the account) or by a signed-in user (joining: its claims replace
//! the account's), and it may be reserved for one username.

use std::time::Duration;

use serde_json::{Map, Value};

use super::{Authority, base64_url, hash_secret, normalize_username};
use crate::audit::{AuditEvent, AuditKind};
use crate::clock::UnixSeconds;
use crate::random::random_32;
use crate::spec::{ClaimSetter, ClaimSpec};
use crate::store::{InvitationRecord, UserRecord};
use crate::{Error, Result};

/// How long an invitation lives unless its creator says otherwise.
pub const DEFAULT_INVITATION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// The longest an invitation may live.
pub const MAX_INVITATION_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Invitation tokens are `inv_` and 43 base64url characters; anything longer is refused unread.
const MAX_INVITATION_TOKEN_LEN: usize = 64;
/// How many times a claim change is retried when another change to the same user lands first.
const CLAIM_CHANGE_ATTEMPTS: usize = 8;

/// Who changes claims or creates an invitation, as the audit trail records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admin<'a> {
    /// An operator, through the command line.
    Operator,
    /// A confidential client holding an admin scope, through the admin API.
    Client(&'a str),
}

impl Admin<'_> {
    fn label(self) -> String {
        match self {
            Self::Operator => "operator".to_owned(),
            Self::Client(id) => format!("client:{id}"),
        }
    }
}

/// A new invitation: the token (shown once to its creator, who passes it to the invitee) and its
/// expiry.
#[derive(Debug, Clone)]
pub struct NewInvitation {
    /// The token to redeem.
    pub token: String,
    /// When it stops being redeemable (Unix seconds).
    pub expires_at: UnixSeconds,
}

impl Authority {
    /// The spec's declaration of claim `name`.
    fn declared_claim(&self, name: &str) -> Result<&ClaimSpec> {
        self.spec.claims.get(name).ok_or_else(|| Error::invalid(name, "is not a claim declared in the spec"))
    }

    /// Checks a claim value against its declaration: declared, of its type and within bounds;
    /// returns the declaration.
    fn check_claim(&self, name: &str, value: &Value) -> Result<&ClaimSpec> {
        let declared = self.declared_claim(name)?;
        declared.kind.check(value).map_err(|why| Error::invalid(name, why))?;
        Ok(declared)
    }

    /// [`Self::check_claim`] for each of `claims`.
    fn check_claims(&self, claims: &Map<String, Value>) -> Result<()> {
        claims.iter().try_for_each(|(name, value)| self.check_claim(name, value).map(drop))
    }

    /// Checks the claims a user sends at sign-up: each declared, settable by the user, well-typed.
    pub(super) fn check_sent_claims(&self, claims: &Map<String, Value>) -> Result<()> {
        for (name, value) in claims {
            if self.check_claim(name, value)?.set_by != ClaimSetter::User {
                return Err(Error::ClaimNotSettable(name.clone()));
            }
        }
        Ok(())
    }

    /// The claims of a new account: what was sent or set by its creator, then the invitation's,
    /// then the spec's defaults for what is still missing; every required claim must be there.
    pub(super) fn new_user_claims(
        &self,
        mut claims: Map<String, Value>,
        invitation: Option<&InvitationRecord>,
    ) -> Result<Map<String, Value>> {
        if let Some(invitation) = invitation {
            claims.extend(invitation.claims.clone());
        }
        for (name, spec) in &self.spec.claims {
            if let (false, Some(default)) = (claims.contains_key(name), &spec.default) {
                claims.insert(name.clone(), default.clone());
            }
            if spec.required && !claims.contains_key(name) {
                return Err(match spec.set_by {
                    ClaimSetter::User => Error::invalid(name.clone(), "is required"),
                    ClaimSetter::Admin => Error::invalid(name.clone(), "is required and comes with an invitation"),
                });
            }
        }
        Ok(claims)
    }

    /// Creates an account as an operator: any declared claim may be given (then the defaults;
    /// required claims must be present). The user's own path is [`Authority::sign_up`].
    pub async fn add_user(&self, username: &str, password: &str, claims: Map<String, Value>) -> Result<UserRecord> {
        let username = normalize_username(username)?;
        self.passwords.check_policy(password)?;
        self.check_claims(&claims)?;
        let claims = self.new_user_claims(claims, None)?;
        self.create_account(&username, password, claims, serde_json::json!({ "by": "operator" })).await
    }

    /// Changes a user's claims: each member of `changes` sets its claim, `null` removes it (JSON
    /// Merge Patch, RFC 7396). A required claim cannot be removed. Concurrent changes to one user
    /// all apply (each re-reads and retries); the new claims reach tokens at the next refresh.
    pub async fn set_user_claims(&self, user_id: &str, changes: &Map<String, Value>, by: Admin<'_>) -> Result<UserRecord> {
        for (name, value) in changes {
            if !value.is_null() {
                self.check_claim(name, value)?;
            } else if self.declared_claim(name)?.required {
                return Err(Error::invalid(name.clone(), "is required and cannot be removed"));
            }
        }
        let user = self.change_claims(user_id, changes).await?;
        let names: Vec<&String> = changes.keys().collect();
        self.audit(
            AuditEvent::new(self.clock.now_ms(), AuditKind::UserClaimsChanged)
                .user(user_id)
                .detail(serde_json::json!({ "claims": names, "by": by.label() })),
        )
        .await?;
        Ok(user)
    }

    /// Applies a merge patch of claims with a compare-and-set on the stored claims.
    async fn change_claims(&self, user_id: &str, changes: &Map<String, Value>) -> Result<UserRecord> {
        for _ in 0..CLAIM_CHANGE_ATTEMPTS {
            let mut user = self.store.user_by_id(user_id).await?.ok_or_else(|| Error::NotFound(format!("user {user_id}")))?;
            let mut claims = user.claims.clone();
            for (name, value) in changes {
                if value.is_null() {
                    claims.remove(name);
                } else {
                    claims.insert(name.clone(), value.clone());
                }
            }
            if self.store.replace_user_claims(user_id, &user.claims, &claims).await? {
                user.claims = claims;
                return Ok(user);
            }
        }
        Err(Error::StoreUnavailable(format!("the claims of user {user_id} keep changing; retry")))
    }

    /// Creates an invitation that sets `claims` (at least one, each declared and well-typed) on
    /// the account that redeems it, within `ttl` (at most [`MAX_INVITATION_TTL`]), optionally
    /// reserved for `username`.
    pub async fn create_invitation(
        &self,
        claims: Map<String, Value>,
        username: Option<&str>,
        ttl: Duration,
        by: Admin<'_>,
    ) -> Result<NewInvitation> {
        if claims.is_empty() {
            return Err(Error::invalid("claims", "must set at least one claim"));
        }
        self.check_claims(&claims)?;
        if ttl.is_zero() || ttl > MAX_INVITATION_TTL {
            return Err(Error::invalid("expires_in", format!("must be 1 s to {} s", MAX_INVITATION_TTL.as_secs())));
        }
        let username = username.map(normalize_username).transpose()?;
        let token = format!("inv_{}", base64_url(&random_32(self.entropy.as_ref())?));
        let now = self.clock.now();
        let expires_at = now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX));
        let names: Vec<String> = claims.keys().cloned().collect();
        let record = InvitationRecord {
            hash: hash_secret(&token),
            claims,
            username,
            created_by: by.label(),
            created_at: now,
            expires_at,
            used_at: None,
        };
        self.store.create_invitation(&record).await?;
        self.audit(
            AuditEvent::new(self.clock.now_ms(), AuditKind::InvitationCreated)
                .detail(serde_json::json!({ "claims": names, "by": by.label(), "expires_at": expires_at })),
        )
        .await?;
        Ok(NewInvitation { token, expires_at })
    }

    /// Takes an invitation for `username` (normalized): exactly one caller gets it.
    pub(super) async fn take_invitation(&self, token: &str, username: &str) -> Result<InvitationRecord> {
        if token.len() > MAX_INVITATION_TOKEN_LEN || !token.starts_with("inv_") {
            return Err(Error::InvalidInvitation);
        }
        self.store
            .take_invitation(&hash_secret(token), username, self.clock.now())
            .await?
            .ok_or(Error::InvalidInvitation)
    }

    /// Gives back an invitation taken for an account that could not be created or changed.
    pub(super) async fn release_invitation(&self, invitation: &InvitationRecord) {
        if let Err(e) = self.store.release_invitation(&invitation.hash).await {
            tracing::warn!(code = %e.code(), "an invitation taken for a failed sign-up stays used: {e}");
        }
    }

    /// Redeems an invitation on an existing account (joining its tenant): its claims replace the
    /// account's, from the next refresh on.
    pub async fn accept_invitation(&self, user_id: &str, token: &str) -> Result<UserRecord> {
        let user = self.store.user_by_id(user_id).await?.filter(|u| !u.disabled).ok_or(Error::InvalidCredentials)?;
        let invitation = self.take_invitation(token, &user.username).await?;
        let user = match self.change_claims(user_id, &invitation.claims).await {
            Ok(user) => user,
            Err(e) => {
                self.release_invitation(&invitation).await;
                return Err(e);
            }
        };
        self.audit_invitation_used(user_id, &invitation, true).await?;
        Ok(user)
    }

    /// The `invitation_used` audit event: at sign-up (`joined` false) or by a signed-in user.
    pub(super) async fn audit_invitation_used(&self, user_id: &str, invitation: &InvitationRecord, joined: bool) -> Result<()> {
        let names: Vec<&String> = invitation.claims.keys().collect();
        self.audit(
            AuditEvent::new(self.clock.now_ms(), AuditKind::InvitationUsed)
                .user(user_id)
                .detail(serde_json::json!({ "claims": names, "by": invitation.created_by, "joined": joined })),
        )
        .await
    }

    /// How many users lack a claim that the spec requires (a claim made required after they
    /// signed up): their tokens would carry no such claim and verifiers would refuse them.
    pub async fn users_lacking_required_claims(&self) -> Result<u64> {
        let required: Vec<&String> =
            self.spec.claims.iter().filter(|(_, c)| c.required && c.default.is_none()).map(|(n, _)| n).collect();
        if required.is_empty() {
            return Ok(0);
        }
        let mut lacking = 0;
        let mut offset = 0;
        loop {
            let page = self.store.list_users(500, offset).await?;
            lacking += page.iter().filter(|u| required.iter().any(|n| !u.claims.contains_key(*n))).count() as u64;
            if page.len() < 500 {
                return Ok(lacking);
            }
            offset += 500;
        }
    }
}
