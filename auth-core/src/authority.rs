//! The issuance paths, assembled from the parts: sign-up, the password, refresh-token and
//! client-credentials grants, and revocation. Each path checks the client and scope against the spec
//! and appends an audit event; the HTTP layer only translates requests and errors.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::{Map, Value};
use subtle::ConstantTimeEq as _;

use crate::audit::{AuditEvent, AuditKind, RepeatedRefusals};
use crate::clock::Clock;
use crate::error::{RefreshError, TokenError};
use crate::keys::{KeyRing, KeySnapshot, MasterKey, RewrapReport, RotationStep};
use crate::password::PasswordHasher;
use crate::random::{Entropy, random_32, random_id};
use crate::refresh::RefreshFamilies;
use crate::liveness::FamilyLiveness;
use crate::ratelimit::LimiterBackend;
use crate::spec::{ClientSpec, RateLimitSpec, Spec};
use crate::store::{ClientRecord, RefreshFamily, KeyRecord, Store, UserRecord};
use crate::tokens::{
    AccessClaims, AccessTokenIssuer, AccessTokenVerifier, IssuedToken, TokenSubject, VERIFIED_TOKENS_CAPACITY,
    VerifiedTokens,
};
use crate::{Error, Result};

mod backchannel;
mod browser;
mod claims;
mod consent;
mod login;

pub use backchannel::{BackchannelLogout, LogoutDelivery};
pub use browser::{
    Authorization, AuthorizationRequest, AuthorizeRefusal, BrowserSignIn, MAX_ID_TOKEN_HINT_LEN, MAX_LOGIN_HINT_LEN,
    MAX_NONCE_LEN, MAX_SCOPE_LEN, MAX_STATE_LEN, MAX_UI_LOCALES_LEN, OIDC_SCOPES, OPENID_SCOPE, PROFILE_SCOPE, PUSHED_REQUEST_TTL_SECS,
    Prompt, PushedAuthorization, REQUEST_URI_PREFIX, RequestChannel,
};
pub use consent::{REASON_CONSENT_REVOKED, needs_consent};
pub use claims::{Admin, DEFAULT_INVITATION_TTL, MAX_INVITATION_TTL, NewInvitation};
pub use login::{DEVICE_TOKEN_TTL_SECS, PasswordLogin, source_key};

/// Longest accepted username, in characters (Unicode scalar values) as sent, before normalization.
pub const MAX_USERNAME_CHARS: usize = 128;

/// What a successful grant returns.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The access token.
    pub access: IssuedToken,
    /// The refresh token, for grants that start or continue a refresh family.
    pub refresh_token: Option<String>,
    /// The granted scope (space-separated).
    pub scope: String,
    /// A new device token (password logins): presented at the user's next login from the same
    /// device, it keeps a login allowance of its own.
    pub device_token: Option<String>,
    /// An OpenID Connect ID token (code exchanges with the `openid` scope).
    pub id_token: Option<String>,
}

/// An active token, as introspection reports it.
#[derive(Debug, Clone)]
pub enum Introspection {
    /// A verified access token.
    Access(AccessClaims),
    /// A live refresh token.
    Refresh {
        /// Its refresh family (`sid`).
        family: RefreshFamily,
        /// When it expires unless used.
        expires_at: crate::clock::UnixSeconds,
    },
}

/// How a client authenticated on this request.
#[derive(Debug, Clone, Copy)]
pub struct ClientCredentials<'a> {
    /// `client_id`.
    pub id: &'a str,
    /// The secret, from HTTP Basic or the form; `None` for public clients.
    pub secret: Option<&'a str>,
}

/// The issuance paths of one issuer.
#[derive(Debug)]
pub struct Authority {
    spec: Arc<Spec>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
    keys: Arc<KeyRing>,
    passwords: Arc<PasswordHasher>,
    refresh: RefreshFamilies,
    issuer: AccessTokenIssuer,
    verifier: VerifiedTokens,
    /// Stored secret hashes of confidential clients, by id, once read from the store. A client's
    /// record never changes after registration (the store only inserts clients) and only clients
    /// of the spec are looked up, so this stays small and never goes stale; a client not yet
    /// registered is looked up again on every request, so a registration made by another process
    /// is seen at once.
    client_secrets: RwLock<HashMap<String, String>>,
    /// Per-account login attempts; none when not configured.
    login_limits: Option<LoginLimits>,
    /// Refusals written once per window and counted after (see [`RepeatedRefusals`]).
    refusals: RepeatedRefusals,
    /// Where back-channel logout tokens go; none: none are made.
    logout_delivery: Option<Arc<dyn LogoutDelivery>>,
}

/// How long repeated refusals of the same kind, user, client and reason are counted before their
/// summary is written.
pub const REFUSAL_WINDOW_MS: i64 = 60_000;
/// Windows of repeated refusals open at once; refusals beyond are counted together.
const REFUSAL_WINDOWS: usize = 10_000;

/// Login limits on a limiter backend (the one the scope limits use, so that replicas sharing
/// Redis share them too).
#[derive(Debug, Clone)]
struct LoginLimits {
    backend: Arc<dyn LimiterBackend>,
    quotas: LoginQuotas,
}

/// The login limits' quotas (see `authority/login.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginQuotas {
    /// Password attempts per account for unknown devices, and per trusted device.
    pub attempts: RateLimitSpec,
    /// Failed logins per source address (an IPv6 /64) across all accounts, from unknown devices.
    pub source_failures: RateLimitSpec,
}

impl Authority {
    /// Assembles the issuance paths.
    pub fn new(
        spec: Arc<Spec>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        entropy: Arc<dyn Entropy>,
        keys: Arc<KeyRing>,
        passwords: Arc<PasswordHasher>,
    ) -> Self {
        let refresh = RefreshFamilies::new(store.clone(), clock.clone(), entropy.clone(), spec.tokens.clone());
        Self {
            issuer: AccessTokenIssuer::from_spec(&spec),
            verifier: VerifiedTokens::new(AccessTokenVerifier::from_spec(&spec), VERIFIED_TOKENS_CAPACITY),
            spec,
            store,
            clock,
            entropy,
            keys,
            passwords,
            refresh,
            client_secrets: RwLock::new(HashMap::new()),
            login_limits: None,
            refusals: RepeatedRefusals::new(REFUSAL_WINDOW_MS, REFUSAL_WINDOWS),
            logout_delivery: None,
        }
    }

    /// Limits password attempts to `quotas.attempts` per account for unknown devices and per
    /// device for devices that logged in before, and failed logins from unknown devices to
    /// `quotas.source_failures` per source address (see `authority/login.rs`), on `backend`. Every
    /// attempt takes one unit before the password is checked, so that parallel guesses cannot
    /// slip past it; unknown usernames are limited exactly like known ones.
    pub fn with_login_limits(mut self, backend: Arc<dyn LimiterBackend>, quotas: LoginQuotas) -> Self {
        self.login_limits = Some(LoginLimits { backend, quotas });
        self
    }

    /// Caches family liveness: a live family is trusted for at most `ttl` after it was read, and
    /// revocations forget it at once (see [`FamilyLiveness`]). Takes effect once
    /// [`FamilyLiveness::follow`] runs on [`Authority::family_liveness`].
    pub fn with_liveness_cache(mut self, ttl: Duration) -> Self {
        let liveness = FamilyLiveness::new(self.store.clone(), self.clock.clone(), ttl);
        self.refresh = self.refresh.with_liveness(Arc::new(liveness));
        self
    }

    /// The family liveness checks (to spawn [`FamilyLiveness::follow`]).
    pub fn family_liveness(&self) -> &Arc<FamilyLiveness> {
        self.refresh.liveness()
    }

    /// Whether a verified access token is still live: its family is not revoked, or, for a
    /// token without a family (client credentials), the token itself was not revoked.
    pub async fn access_token_is_live(&self, claims: &AccessClaims) -> Result<bool> {
        match &claims.sid {
            Some(sid) => self.refresh.is_live(sid).await,
            None => self.refresh.token_is_live(&claims.jti).await,
        }
    }

    /// The spec in force.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<()> {
        self.store.ping().await
    }

    // -----------------------------------------------------------------------------------------
    // Keys

    /// Applies the rotation policy now (generating the first key of an empty ring) and loads the
    /// result; several replicas may run it at once.
    pub async fn rotate_keys(&self) -> Result<Vec<RotationStep>> {
        self.keys.rotate().await
    }

    /// Emergency rotation: in the chain of `only`, or in every chain in use, a new key signs at
    /// once (see [`crate::keys::KeyRing::rotate_now`]). Returns each new key's algorithm and kid,
    /// the primary's first.
    pub async fn rotate_keys_now(
        &self,
        only: Option<crate::spec::SigningAlgorithm>,
    ) -> Result<Vec<(crate::spec::SigningAlgorithm, String)>> {
        self.keys.rotate_now(only).await
    }

    /// Unpublishes a compromised key at once (see [`crate::keys::KeyRing::revoke`]).
    pub async fn revoke_key(&self, kid: &str) -> Result<Option<String>> {
        self.keys.revoke(kid).await
    }

    /// Loads the keys as stored, changing nothing (for commands that only read).
    pub async fn load_keys(&self) -> Result<Arc<KeySnapshot>> {
        self.keys.reload().await
    }

    /// The keys as last loaded: the signer and the published set.
    pub fn key_snapshot(&self) -> Result<Arc<KeySnapshot>> {
        self.keys.snapshot()
    }

    /// The published JWKS as JSON, from memory (so it answers while the database is down); `None`
    /// before the keys are first loaded.
    pub fn jwks_json(&self) -> Option<bytes::Bytes> {
        self.keys.cached_snapshot().map(|snapshot| snapshot.jwks_json.clone())
    }

    /// Every signing key, retired ones included, oldest first.
    pub async fn list_keys(&self) -> Result<Vec<KeyRecord>> {
        self.store.list_keys().await
    }

    /// Seals every signing key again under `new` (rotation of the master key).
    pub async fn rewrap_keys(&self, new: &MasterKey) -> Result<RewrapReport> {
        self.keys.rewrap(new).await
    }

    // -----------------------------------------------------------------------------------------
    // Users, clients, refresh families and the audit log, as operators and account endpoints see them

    /// A user by id.
    pub async fn user(&self, id: &str) -> Result<Option<UserRecord>> {
        self.store.user_by_id(id).await
    }

    /// A user by username as typed (normalized as at sign-up).
    pub async fn user_by_username(&self, username: &str) -> Result<Option<UserRecord>> {
        self.store.user_by_username(&stored_username(username)?).await
    }

    /// Users ordered by creation, a page at a time.
    pub async fn list_users(&self, limit: u32, offset: u32) -> Result<Vec<UserRecord>> {
        self.store.list_users(limit, offset).await
    }

    /// The registered clients.
    pub async fn list_clients(&self) -> Result<Vec<ClientRecord>> {
        self.store.list_clients().await
    }

    /// The latest `limit` audit events, newest first.
    pub async fn audit_tail(&self, limit: u32) -> Result<Vec<AuditEvent>> {
        self.store.audit_tail(limit).await
    }

    /// The user's live refresh families (what the account API lists as sessions), newest first.
    pub async fn families_of_user(&self, user_id: &str) -> Result<Vec<RefreshFamily>> {
        self.refresh.families_of_user(user_id).await
    }

    /// Revokes the user's refresh family `sid` (`logout`); `false` when the user has no such
    /// family (another user's family is reported exactly like a missing one).
    pub async fn revoke_family(&self, user_id: &str, sid: &str) -> Result<bool> {
        // Anything that is not the shape of an id cannot name a family and is not looked up:
        // a NUL byte, say, is refused by PostgreSQL as text.
        if !could_be_id(sid) {
            return Ok(false);
        }
        match self.store.family(sid).await? {
            Some(family) if family.user_id.as_deref() == Some(user_id) => {
                self.refresh.revoke_family(sid, "logout").await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Revokes the refresh family `sid` of a verified token (`logout`); `false` when it was
    /// already revoked.
    pub async fn revoke_token_family(&self, sid: &str) -> Result<bool> {
        self.refresh.revoke_family(sid, "logout").await
    }

    /// Revokes every refresh family and ends every browser session of the user (`logout_all`);
    /// returns how many of both were live.
    pub async fn revoke_user_families(&self, user_id: &str) -> Result<u64> {
        let families = self.refresh.revoke_user(user_id, "logout_all").await?;
        Ok(families + self.end_user_browser_sessions(user_id, "logout_all").await?)
    }

    /// A user signs up. The username is normalized (RFC 8265, lowercase) so that names differing only
    /// by Unicode form or case are one account. The user may send only the claims the spec lets
    /// users set (`set_by = "user"`); claims set by administrators come with an invitation, if
    /// one is given (redeemed once, and given back if the account cannot be created).
    pub async fn sign_up(
        &self,
        username: &str,
        password: &str,
        claims: Map<String, Value>,
        invitation: Option<&str>,
    ) -> Result<UserRecord> {
        let normalized = normalize_username(username)?;
        self.passwords.check_policy(password)?;
        self.check_sent_claims(&claims)?;
        let Some(token) = invitation else {
            let claims = self.new_user_claims(claims, None)?;
            return self.create_account(&normalized, password, claims, serde_json::json!({ "by": "sign_up" })).await;
        };
        let invitation = self.take_invitation(token, &normalized).await?;
        let created = async {
            let claims = self.new_user_claims(claims, Some(&invitation))?;
            let how = serde_json::json!({ "by": "invitation", "invited_by": invitation.created_by });
            self.create_account(&normalized, password, claims, how).await
        }
        .await;
        match created {
            Ok(user) => {
                self.audit_invitation_used(&user.id, &invitation, false).await?;
                Ok(user)
            }
            Err(e) => {
                self.release_invitation(&invitation).await;
                Err(e)
            }
        }
    }

    /// Stores a new account: `username` normalized, `password` checked against the policy,
    /// `claims` settled; `how` goes to the audit event.
    async fn create_account(&self, username: &str, password: &str, claims: Map<String, Value>, how: Value) -> Result<UserRecord> {
        let user = UserRecord {
            id: random_id(self.entropy.as_ref())?,
            username: username.to_owned(),
            password_hash: self.passwords.hash(password).await?,
            claims,
            disabled: false,
            created_at: self.clock.now(),
        };
        self.store.create_user(&user).await?;
        self.audit(AuditEvent::new(self.clock.now_ms(), AuditKind::UserCreated).user(&user.id).detail(how)).await?;
        Ok(user)
    }

    /// Registers a client of the spec. Confidential clients get a new random secret, returned once
    /// and stored only as a SHA-256 hash (256-bit random secrets need no slow hash).
    pub async fn register_client(&self, id: &str) -> Result<Option<String>> {
        let spec = self.spec.clients.get(id).ok_or_else(|| {
            let known: Vec<&str> = self.spec.clients.keys().map(String::as_str).collect();
            let shown: String = id.chars().take(64).collect();
            Error::invalid("client", format!("{shown:?} is not a client of the spec; its clients: {}", known.join(", ")))
        })?;
        let secret = if spec.public {
            None
        } else {
            Some(base64_url(&random_32(self.entropy.as_ref())?))
        };
        let record = ClientRecord {
            id: id.to_owned(),
            secret_hash: secret.as_deref().map(hash_secret),
            created_at: self.clock.now(),
        };
        self.store.create_client(&record).await?;
        self.audit(AuditEvent::new(self.clock.now_ms(), AuditKind::ClientCreated).client(id)).await?;
        Ok(secret)
    }

    fn client_spec(&self, id: &str) -> Result<&ClientSpec> {
        self.spec.clients.get(id).ok_or(Error::InvalidClient)
    }

    /// Authenticates a client: public clients must not send a secret; confidential clients must be
    /// registered and send their secret.
    pub async fn authenticate_client(&self, client: ClientCredentials<'_>) -> Result<&ClientSpec> {
        let spec = self.client_spec(client.id)?;
        match (spec.public, client.secret) {
            (true, None) => Ok(spec),
            (true, Some(_)) | (false, None) => Err(Error::InvalidClient),
            (false, Some(secret)) => {
                let stored = self.client_secret_hash(client.id).await?;
                if bool::from(stored.as_bytes().ct_eq(hash_secret(secret).as_bytes())) {
                    Ok(spec)
                } else {
                    Err(Error::InvalidClient)
                }
            }
        }
    }

    /// The stored secret hash of a registered confidential client (from memory after the first
    /// lookup: introspection and the client-credentials grant authenticate on every request).
    async fn client_secret_hash(&self, id: &str) -> Result<String> {
        if let Some(stored) = self.client_secrets.read().ok().and_then(|known| known.get(id).cloned()) {
            return Ok(stored);
        }
        let record = self.store.client(id).await?.ok_or(Error::InvalidClient)?;
        let stored = record.secret_hash.ok_or(Error::InvalidClient)?;
        if let Ok(mut known) = self.client_secrets.write() {
            known.insert(id.to_owned(), stored.clone());
        }
        Ok(stored)
    }

    fn check_grant(spec: &ClientSpec, grant_type: &str) -> Result<()> {
        if spec.allows(grant_type) {
            Ok(())
        } else {
            Err(Error::UnauthorizedGrant(grant_type.to_owned()))
        }
    }

    /// The granted scope: the requested scopes, each of which the client must be allowed; when
    /// none are requested, all of the client's but admin scopes, which are granted only when asked
    /// for by name.
    pub fn resolve_scope(spec: &Spec, client: &ClientSpec, requested: Option<&str>) -> Result<String> {
        let requested = requested.filter(|text| !text.trim().is_empty());
        if requested.is_none() {
            let admin = |scope: &str| spec.scopes.get(scope).is_some_and(|s| s.admin);
            let default: Vec<&str> = client.scopes.iter().map(String::as_str).filter(|s| !admin(s)).collect();
            return Ok(default.join(" "));
        }
        grant_scope(client.scopes.iter().map(String::as_str), requested)
    }

    /// The password grant: a new refresh family for the user.
    pub async fn password_grant(
        &self,
        client: ClientCredentials<'_>,
        username: &str,
        password: &str,
        scope: Option<&str>,
    ) -> Result<Grant> {
        self.password_login(client, PasswordLogin { username, password, scope, ..PasswordLogin::default() }).await
    }

    /// The password grant as a client sent it, from a device that may have logged in before and
    /// from a known source address. The client is authenticated and the request checked first,
    /// so that a request failing them charges nothing; then the source's budget of failures is
    /// read and the attempt charged (see `authority/login.rs`).
    pub async fn password_login(&self, client: ClientCredentials<'_>, login: PasswordLogin<'_>) -> Result<Grant> {
        let client_spec = self.authenticate_client(client).await?;
        Self::check_grant(client_spec, "password")?;
        let scope = Self::resolve_scope(&self.spec, client_spec, login.scope)?;
        let user = self.authenticate_user(client.id, &login).await?;
        let (family, refresh_token) = self.refresh.start(Some(&user.id), client.id, &scope).await?;
        let access = self.issue(&user.id, client.id, &scope, Some(family.id.clone()), &user.claims)?;
        self.audit(
            AuditEvent::new(self.clock.now_ms(), AuditKind::LoginSucceeded)
                .user(&user.id)
                .client(client.id)
                .family(&family.id)
                .detail(serde_json::json!({ "scope": scope, "jti": access.claims.jti })),
        )
        .await?;
        let device_token = Some(self.device_token(&user.id)?);
        Ok(Grant { access, refresh_token: Some(refresh_token), scope, device_token, id_token: None })
    }

    /// The one login path of every flow (the password grant and the hosted sign-in form): the
    /// account's and the source's allowances, the password check (a dummy one for unknown users),
    /// a rehash when the parameters rose, and an audited refusal. `client_id` is the client the
    /// user is signing in to, already checked by the caller.
    pub(crate) async fn authenticate_user(&self, client_id: &str, login: &PasswordLogin<'_>) -> Result<UserRecord> {
        let normalized = stored_username(login.username);
        let user = match &normalized {
            Ok(name) => self.store.user_by_username(name).await?,
            Err(_) => None,
        };
        // A name the rules refuse is charged as sent: it is no account, but still a guess.
        let account = normalized.as_deref().unwrap_or(login.username);
        let attempt = self.charge_login_attempt(client_id, account, user.as_ref(), login).await?;
        // Unknown users cost the same verification as known ones (dummy hash).
        let check = self.passwords.verify(login.password, user.as_ref().map(|u| u.password_hash.as_str())).await?;
        let user = match user {
            Some(user) if check.valid && !user.disabled => user,
            other => {
                self.charge_login_failure(&attempt).await;
                let mut event = AuditEvent::new(self.clock.now_ms(), AuditKind::LoginFailed).client(client_id);
                if let Some(user) = &other {
                    event = event.user(&user.id);
                }
                self.audit_refusal(event.detail(serde_json::json!({ "reason": "invalid_credentials" }))).await?;
                return Err(Error::InvalidCredentials);
            }
        };
        if check.needs_rehash {
            let hash = self.passwords.hash(login.password).await?;
            self.store.set_password_hash(&user.id, &hash).await?;
        }
        Ok(user)
    }

    /// The refresh-token grant: rotates the refresh token and issues a new access token. A
    /// narrower scope may be requested (RFC 6749 section 6); a wider one is refused.
    pub async fn refresh_grant(
        &self,
        client: ClientCredentials<'_>,
        refresh_token: &str,
        scope: Option<&str>,
    ) -> Result<Grant> {
        let client_spec = self.authenticate_client(client).await?;
        Self::check_grant(client_spec, "refresh_token")?;
        // A scope wider than the session's is refused before the token is rotated.
        let admit = |family: &RefreshFamily| grant_scope(family.scope.split(' ').filter(|s| !s.is_empty()), scope).map(drop);
        let rotation = self.refresh.rotate_if(refresh_token, client.id, admit).await?;
        let family = &rotation.family;
        if family.user_id.is_none() {
            return Err(Error::Refresh(RefreshError::Unknown));
        }
        // Read with the token: a user disabled after that read had its families revoked, which
        // the rotation's condition on the family sees.
        let user = match rotation.user {
            Some(user) if !user.disabled => user,
            _ => {
                self.refresh.revoke_family(&family.id, "user_disabled").await?;
                return Err(Error::Refresh(RefreshError::Revoked));
            }
        };
        let scope = grant_scope(family.scope.split(' ').filter(|s| !s.is_empty()), scope)?;
        let access = self.issue(&user.id, client.id, &scope, Some(family.id.clone()), &user.claims)?;
        Ok(Grant { access, refresh_token: Some(rotation.refresh_token), scope, device_token: None, id_token: None })
    }

    /// The client-credentials grant: a token whose subject is the client itself, no refresh family.
    pub async fn client_credentials_grant(&self, client: ClientCredentials<'_>, scope: Option<&str>) -> Result<Grant> {
        let client_spec = self.authenticate_client(client).await?;
        Self::check_grant(client_spec, "client_credentials")?;
        let scope = Self::resolve_scope(&self.spec, client_spec, scope)?;
        let access = self.issue(client.id, client.id, &scope, None, &Map::new())?;
        self.audit(
            AuditEvent::new(self.clock.now_ms(), AuditKind::ClientCredentialsIssued)
                .client(client.id)
                .detail(serde_json::json!({ "scope": scope, "jti": access.claims.jti })),
        )
        .await?;
        Ok(Grant { access, refresh_token: None, scope, device_token: None, id_token: None })
    }

    fn issue(
        &self,
        sub: &str,
        client_id: &str,
        scope: &str,
        sid: Option<String>,
        claims: &Map<String, Value>,
    ) -> Result<IssuedToken> {
        let snapshot = self.keys.snapshot()?;
        // Only claims the spec declares reach the token; a user lacking one that has a default
        // (declared after the user signed up) gets the default.
        let mut custom: BTreeMap<String, Value> = claims
            .iter()
            .filter(|(name, _)| self.spec.claims.contains_key(*name))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if sid.is_some() {
            for (name, claim) in &self.spec.claims {
                if let (false, Some(default)) = (custom.contains_key(name), &claim.default) {
                    custom.insert(name.clone(), default.clone());
                }
            }
        }
        let subject = TokenSubject {
            sub: sub.to_owned(),
            client_id: client_id.to_owned(),
            scope: scope.to_owned(),
            sid,
            custom,
        };
        self.issuer.issue(&snapshot.active, subject, self.clock.now(), random_id(self.entropy.as_ref())?)
    }

    /// Verifies an access token with the current key set.
    pub fn verify_access_token(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let snapshot = self.keys.cached_snapshot().ok_or(TokenError::UnknownKey)?;
        self.verifier.verify(token, &snapshot.keys, self.clock.now())
    }

    /// Introspection (RFC 7662): what a token is, if it is active now. An access token is active
    /// when it verifies and its family (if any) is not revoked; a refresh token when it has not
    /// been rotated and its family is live.
    pub async fn introspect(&self, token: &str) -> Result<Option<Introspection>> {
        if crate::tokens::looks_like_jwt(token) {
            let Ok(claims) = self.verify_access_token(token) else { return Ok(None) };
            if !self.access_token_is_live(&claims).await? {
                return Ok(None);
            }
            return Ok(Some(Introspection::Access(claims)));
        }
        Ok(self
            .refresh
            .inspect(token)
            .await?
            .map(|(record, family)| Introspection::Refresh { expires_at: record.idle_expires_at, family }))
    }

    /// Revocation (RFC 7009) of an access token: one of a session revokes the session (every
    /// token of it, refresh tokens included); one without (client credentials) is denied until it
    /// expires, on every replica. Tokens that do not verify (expired, foreign, garbage) are not
    /// an error: there is nothing left to revoke. Only the client the token was issued to may
    /// revoke it (RFC 7009 section 2.1). `true` if something was revoked.
    pub async fn revoke_access_token(&self, client: ClientCredentials<'_>, token: &str) -> Result<bool> {
        self.authenticate_client(client).await?;
        let Ok(claims) = self.verify_access_token(token) else { return Ok(false) };
        if claims.client_id != client.id {
            return Err(Error::Refresh(RefreshError::WrongClient));
        }
        match &claims.sid {
            Some(sid) => self.refresh.revoke_family(sid, "access token revoked").await,
            None => self.refresh.revoke_access_token(&claims.jti, client.id, claims.exp).await,
        }
    }

    /// Forgets revocations of access tokens that have expired since (background upkeep).
    pub async fn purge_revoked_access_tokens(&self) -> Result<u64> {
        self.store.purge_revoked_access_tokens(self.clock.now()).await
    }

    /// Revocation (RFC 7009): a refresh token revokes its family. Unknown tokens are not an error.
    pub async fn revoke_refresh_token(&self, client: ClientCredentials<'_>, token: &str) -> Result<bool> {
        self.authenticate_client(client).await?;
        // RFC 7009 section 2.1: only the client the token was issued to may revoke it.
        match self.refresh.family_of(token).await? {
            None => Ok(false),
            Some(family) if family.client_id != client.id => Err(Error::Refresh(RefreshError::WrongClient)),
            Some(_) => self.refresh.revoke_token(token).await,
        }
    }

    /// Disables a user, revokes all of its refresh families and ends its browser sessions.
    pub async fn disable_user(&self, user_id: &str) -> Result<u64> {
        self.store.set_user_disabled(user_id, true).await?;
        let ended = self.refresh.revoke_user(user_id, "user_disabled").await?;
        self.end_user_browser_sessions(user_id, "user_disabled").await?;
        self.audit(
            AuditEvent::new(self.clock.now_ms(), AuditKind::UserDisabled)
                .user(user_id)
                .detail(serde_json::json!({ "sessions_ended": ended })),
        )
        .await?;
        Ok(ended)
    }

    async fn audit(&self, event: AuditEvent) -> Result<()> {
        self.store.append_audit(&event).await
    }

    /// Audits a refusal an attacker can repeat at will: the first of its kind for the same user,
    /// client and reason within [`REFUSAL_WINDOW_MS`] is written, the rest counted into one
    /// summary row (written by [`Authority::flush_refusals`], or with the next such refusal).
    async fn audit_refusal(&self, event: AuditEvent) -> Result<()> {
        for row in self.refusals.note(event) {
            self.store.append_audit(&row).await?;
        }
        Ok(())
    }

    /// Writes the summaries of repeated refusals whose window has ended (every open one when
    /// `all`, at shutdown); returns how many rows were written.
    pub async fn flush_refusals(&self, all: bool) -> Result<usize> {
        let rows = self.refusals.due(self.clock.now_ms(), all);
        for row in &rows {
            self.store.append_audit(row).await?;
        }
        Ok(rows.len())
    }
}

/// The scope to grant: every one of `allowed` when nothing is requested, else the requested
/// scopes (each at most once, in the order asked), each of which must be allowed.
fn grant_scope<'a>(allowed: impl Iterator<Item = &'a str> + Clone, requested: Option<&str>) -> Result<String> {
    let requested: Vec<&str> = match requested {
        Some(text) if !text.trim().is_empty() => text.split(' ').filter(|s| !s.is_empty()).collect(),
        _ => return Ok(allowed.collect::<Vec<_>>().join(" ")),
    };
    let mut granted: Vec<&str> = Vec::new();
    for scope in requested {
        if !allowed.clone().any(|s| s == scope) {
            return Err(Error::InvalidScope(scope.to_owned()));
        }
        if !granted.contains(&scope) {
            granted.push(scope);
        }
    }
    Ok(granted.join(" "))
}

/// Whether `id` has the shape of an id this service makes (base64url, as
/// [`crate::random::random_id`] makes them).
fn could_be_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Normalizes a username by RFC 8265's UsernameCaseMapped profile (PRECIS): fullwidth and
/// halfwidth forms mapped to their usual ones, lowercase, NFC, the bidi rule, and only the
/// characters of the PRECIS IdentifierClass (letters, digits, ASCII punctuation and symbols; no
/// spaces inside a userpart, no invisible, formatting or bidi control characters, no
/// compatibility forms). A username may be several userparts separated by spaces (RFC 8265
/// section 3.1): each is enforced, and runs of spaces become one. Refuses empty and over-long
/// names.
///
/// The length bound counts the characters as sent, not as normalized: normalization can lengthen
/// or shorten a name, and a bound on what the client typed is one that it (and the `maxLength` of
/// the OpenAPI document) can check.
pub fn normalize_username(raw: &str) -> Result<String> {
    use precis_core::profile::PrecisFastInvocation as _;
    if raw.chars().count() > MAX_USERNAME_CHARS {
        return Err(Error::invalid("username", format!("must be at most {MAX_USERNAME_CHARS} characters")));
    }
    let mut parts = Vec::new();
    for part in raw.split(' ').filter(|part| !part.is_empty()) {
        let enforced = precis_profiles::UsernameCaseMapped::enforce(part).map_err(|e| match e {
            precis_core::Error::BadCodepoint(info) => Error::invalid(
                "username",
                format!("U+{:04X} is not allowed in a username (RFC 8265: letters, digits and punctuation, no invisible or control characters)", info.cp),
            ),
            _ => Error::invalid("username", "is not a valid username (RFC 8265)"),
        })?;
        parts.push(enforced.into_owned());
    }
    if parts.is_empty() {
        return Err(Error::invalid("username", "must not be empty"));
    }
    Ok(parts.join(" "))
}

/// The name an account of `raw` is stored under, for looking it up: the RFC 8265 form, or, for a
/// name the profile refuses (a symbol, a compatibility character), the form usernames were stored
/// in before it applied (trimmed, NFKC, lowercase), so that such an account can still log in and
/// be managed; nobody can sign up with such a name any more. The profile's refusal for names that
/// could never have been stored (over-long, empty, control characters).
fn stored_username(raw: &str) -> Result<String> {
    use unicode_normalization::UnicodeNormalization as _;
    normalize_username(raw).or_else(|refused| {
        if raw.chars().count() > MAX_USERNAME_CHARS {
            return Err(refused);
        }
        let name = raw.trim().nfkc().collect::<String>().to_lowercase();
        if name.is_empty() || name.chars().any(char::is_control) { Err(refused) } else { Ok(name) }
    })
}

/// The UTS #39 skeleton of a normalized username: two names that look alike (a Cyrillic "а" for
/// a Latin "a", "rn" for "m") have the same skeleton. Stored beside each username, unique, so that
/// a name confusable with an existing one is refused like the same name.
pub fn username_skeleton(normalized: &str) -> String {
    unicode_security::confusable_detection::skeleton(normalized).collect()
}

fn hash_secret(secret: &str) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, secret.as_bytes()))
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::GrantType;

    #[test]
    fn usernames_differing_by_form_or_case_normalize_alike() {
        // "é" precomposed vs "e" + combining acute; fullwidth letters; case.
        assert_eq!(normalize_username("Ren\u{e9}e").unwrap(), normalize_username("RENE\u{301}E").unwrap());
        assert_eq!(normalize_username("\u{ff21}lice").unwrap(), "alice");
        assert_eq!(normalize_username("  Guest@Example.COM ").unwrap(), "guest@example.com");
        // Userparts separated by spaces, runs of spaces as one.
        assert_eq!(normalize_username("John   Smith").unwrap(), "john smith");
        assert!(normalize_username("   ").is_err());
        assert!(normalize_username("a\u{0}b").is_err());
        assert!(normalize_username(&"x".repeat(129)).is_err());
        // The bound is on what was sent: 129 characters that normalization would shorten do not pass.
        assert!(normalize_username(&format!("{}e", "e\u{301}".repeat(64))).is_err());
    }

    #[test]
    fn invisible_bidi_and_compatibility_characters_are_refused() {
        for name in [
            "ali\u{200b}ce",  // zero-width space
            "ali\u{200d}ce",  // zero-width joiner
            "\u{202e}ecila",  // right-to-left override
            "alice\u{2066}",  // left-to-right isolate
            "\u{fb01}nance",  // the "fi" ligature
            "alice\u{ad}",    // soft hyphen
            "\u{1f600}",      // an emoji
        ] {
            let refused = normalize_username(name);
            assert!(refused.is_err(), "{name:?} was accepted as {refused:?}");
        }
    }

    #[test]
    fn look_alike_names_share_a_skeleton() {
        let skeleton = |name: &str| username_skeleton(&normalize_username(name).unwrap());
        // Cyrillic а, о, р, е for their Latin twins.
        assert_eq!(skeleton("p\u{430}yp\u{430}l"), skeleton("paypal"));
        assert_eq!(skeleton("b\u{43e}\u{43e}king"), skeleton("booking"));
        assert_eq!(skeleton("\u{440}\u{435}ter"), skeleton("peter"));
        // Greek ο for o, and rn for m.
        assert_eq!(skeleton("r\u{3bf}se"), skeleton("rose"));
        assert_eq!(skeleton("rnary"), skeleton("mary"));
        assert_ne!(skeleton("alice"), skeleton("alicia"));
    }

    #[test]
    fn scope_resolution_defaults_and_refuses() {
        let client = ClientSpec {
            public: true,
            grants: GrantType::named("password").into_iter().collect(),
            scopes: vec!["a".into(), "b".into()],
            ..ClientSpec::default()
        };
        let mut spec = Spec::default_local("http://127.0.0.1:8080");
        assert_eq!(Authority::resolve_scope(&spec, &client, None).unwrap(), "a b");
        assert_eq!(Authority::resolve_scope(&spec, &client, Some("b b")).unwrap(), "b");
        assert!(matches!(Authority::resolve_scope(&spec, &client, Some("a c")), Err(Error::InvalidScope(s)) if s == "c"));
        // An admin scope is granted only when asked for.
        spec.scopes.insert("b".into(), crate::spec::ScopeSpec { admin: true, ..Default::default() });
        assert_eq!(Authority::resolve_scope(&spec, &client, None).unwrap(), "a");
        assert_eq!(Authority::resolve_scope(&spec, &client, Some("a b")).unwrap(), "a b");
    }
}
