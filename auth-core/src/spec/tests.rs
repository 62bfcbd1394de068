use super::*;

const BOOKING: &str = include_str!("../../../fixtures/specs/booking.toml");

fn with_booking(edit: impl FnOnce(&mut Spec)) -> Result<(), SpecError> {
    let mut spec = Spec::parse(BOOKING).expect("booking spec parses");
    edit(&mut spec);
    spec.validate()
}

fn invalid_field(result: Result<(), SpecError>) -> String {
    match result {
        Err(SpecError::Invalid { field, .. }) => field,
        other => panic!("expected a validation error, got {other:?}"),
    }
}

#[test]
fn booking_spec_parses_with_its_values() {
    let spec = Spec::parse(BOOKING).unwrap();
    assert_eq!(spec.issuer, "http://127.0.0.1:8080");
    assert_eq!(spec.audiences, ["booking-api"]);
    assert_eq!(spec.tokens.access_ttl, Seconds(900));
    assert_eq!(spec.tokens.refresh_idle_ttl, Seconds(14 * 86_400));
    assert_eq!(spec.scope_limit("bookings:read"), Some(RateLimitSpec { burst: 120, per: Seconds(60) }));
    assert_eq!(spec.scope_limit("bookings:write"), Some(RateLimitSpec { burst: 30, per: Seconds(60) }));
    assert_eq!(spec.claims["tenant_id"].kind, ClaimType::String);
    assert!(spec.claims["tenant_id"].required);
    let web = &spec.clients["booking-web"];
    assert!(web.public);
    assert_eq!(web.grants, [GrantType::named("password").unwrap(), GrantType::named("refresh_token").unwrap()]);
    let backend = &spec.clients["booking-backend"];
    assert!(!backend.public);
    assert_eq!(backend.grants, [GrantType::named("client_credentials").unwrap()]);
    assert_eq!(backend.scopes, ["bookings:read", "users:admin"]);
    assert!(spec.scopes["users:admin"].admin && !spec.scopes["bookings:read"].admin);
    assert_eq!(spec.claims["tenant_id"].set_by, crate::spec::ClaimSetter::Admin);
}

#[test]
fn claims_are_set_by_administrators_unless_the_spec_says_users() {
    let base = "spec_version = 1\nissuer = \"https://id.example.com\"\naudiences = [\"api\"]\n";
    let spec = Spec::parse(&format!("{base}[claims.tenant]\ntype = \"string\"\n[claims.nick]\ntype = \"string\"\nset_by = \"user\"\n")).unwrap();
    assert_eq!(spec.claims["tenant"].set_by, crate::spec::ClaimSetter::Admin);
    assert_eq!(spec.claims["nick"].set_by, crate::spec::ClaimSetter::User);
    assert!(Spec::parse(&format!("{base}[claims.tenant]\ntype = \"string\"\nset_by = \"anyone\"\n")).is_err());
    // A default must have the claim's type and bounds.
    assert!(Spec::parse(&format!("{base}[claims.floor]\ntype = \"integer\"\ndefault = 3\n")).is_ok());
    assert!(Spec::parse(&format!("{base}[claims.floor]\ntype = \"integer\"\ndefault = \"3\"\n")).is_err());
    let long = "x".repeat(257);
    assert!(Spec::parse(&format!("{base}[claims.t]\ntype = \"string\"\ndefault = \"{long}\"\n")).is_err());
    // An admin scope is for confidential clients that act for themselves only.
    let admin = "[scopes.admin]\nadmin = true\n";
    let confidential = "[clients.ops]\ngrants = [\"client_credentials\"]\nscopes = [\"admin\"]\n";
    assert!(Spec::parse(&format!("{base}{admin}{confidential}")).is_ok());
    let public = "[clients.app]\npublic = true\ngrants = [\"password\"]\nscopes = [\"admin\"]\n";
    assert!(Spec::parse(&format!("{base}{admin}{public}")).unwrap_err().to_string().contains("admin scope"));
    let users = "[clients.web]\ngrants = [\"password\", \"client_credentials\"]\nscopes = [\"admin\"]\n";
    assert!(Spec::parse(&format!("{base}{admin}{users}")).unwrap_err().to_string().contains("admin scope"));
}

#[test]
fn defaults_fill_omitted_sections() {
    let spec = Spec::parse("spec_version = 1\nissuer = \"https://id.example.com\"\naudiences = [\"api\"]\n").unwrap();
    assert_eq!(spec.tokens, TokenPolicy::default());
    assert_eq!(spec.keys, KeyPolicy::default());
    assert_eq!(spec.passwords.memory_kib, 19_456);
    assert_eq!(spec.passwords.iterations, 2);
    assert_eq!(spec.passwords.parallelism, 1);
}

#[test]
fn unknown_field_is_a_parse_error_with_its_line() {
    let text = BOOKING.replace("leeway = \"30s\"", "leeway = \"30s\"\nlee_way = \"1s\"");
    let line = text.lines().position(|l| l.starts_with("lee_way")).unwrap() + 1;
    match Spec::parse(&text) {
        Err(SpecError::Parse { line: l, message, .. }) => {
            assert_eq!(l, line);
            assert!(message.contains("lee_way"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_algorithm_is_refused_with_its_line() {
    let text = BOOKING.replace("algorithm = \"EdDSA\"", "algorithm = \"HS256\"");
    let line = text.lines().position(|l| l.starts_with("algorithm")).unwrap() + 1;
    match Spec::parse(&text) {
        Err(SpecError::Parse { line: l, message, .. }) => {
            assert_eq!(l, line);
            assert!(message.contains("HS256"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_duration_names_the_format() {
    let text = BOOKING.replace("access_ttl = \"15m\"", "access_ttl = \"fifteen minutes\"");
    let err = Spec::parse(&text).unwrap_err().to_string();
    assert!(err.contains("line 8"), "{err}");
    assert!(err.contains("invalid duration"), "{err}");
}

#[test]
fn broken_toml_reports_line_and_column() {
    let err = Spec::parse("spec_version = 1\nissuer = \"http://x\n").unwrap_err();
    assert!(matches!(err, SpecError::Parse { line: 2, .. }), "{err:?}");
}

/// Found by the generated spec edits (`tests/core/malformed.rs`): the TOML parser gives no
/// message when the text ends right after `=`, which left "...column 14: " and nothing else.
#[test]
fn a_value_missing_at_the_end_is_explained() {
    for (text, line, column) in [("spec_version = 1\ndescription =", 2, 14), ("a = ", 1, 5), ("a = { b =", 1, 10)] {
        let err = Spec::parse(text).unwrap_err();
        assert_eq!(
            err,
            SpecError::Parse { line, column, message: "the text ends where a value was expected".into() },
            "{text:?}"
        );
    }
}

#[test]
fn retire_after_shorter_than_token_lifetime_is_refused() {
    let field = invalid_field(with_booking(|s| s.keys.retire_after = Seconds(600)));
    assert_eq!(field, "keys.retire_after");
}

#[test]
fn client_with_undeclared_scope_is_refused() {
    let field = invalid_field(with_booking(|s| {
        s.clients.get_mut("booking-web").unwrap().scopes.push("payments:write".into());
    }));
    assert_eq!(field, "clients.booking-web.scopes");
}

#[test]
fn cross_field_rules_name_their_field() {
    type Edit = Box<dyn Fn(&mut Spec)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("spec_version", Box::new(|s| s.spec_version = 2)),
        ("issuer", Box::new(|s| s.issuer = "not a url".into())),
        ("issuer", Box::new(|s| s.issuer = "ftp://id.example.com".into())),
        ("issuer", Box::new(|s| s.issuer = "https://id.example.com/".into())),
        ("audiences", Box::new(|s| s.audiences.clear())),
        ("tokens.access_ttl", Box::new(|s| s.tokens.access_ttl = Seconds(0))),
        ("tokens.refresh_idle_ttl", Box::new(|s| s.tokens.refresh_idle_ttl = Seconds(100 * 86_400))),
        ("tokens.refresh_reuse_grace", Box::new(|s| s.tokens.refresh_reuse_grace = Seconds(3600))),
        ("keys.publish_ahead", Box::new(|s| s.keys.publish_ahead = Seconds(60))),
        ("keys.rotate_every", Box::new(|s| s.keys.rotate_every = Seconds(86_400))),
        ("passwords.min_length", Box::new(|s| s.passwords.min_length = 6)),
        ("passwords.max_length", Box::new(|s| s.passwords.max_length = 32)),
        ("passwords.memory_kib", Box::new(|s| s.passwords.memory_kib = 1024)),
        ("claims.sub", Box::new(|s| {
            s.claims.insert("sub".into(), ClaimSpec::new(ClaimType::String, false));
        })),
        ("clients.booking-web.grants", Box::new(|s| {
            s.clients.get_mut("booking-web").unwrap().grants.push(GrantType::named("client_credentials").unwrap());
        })),
        ("clients.booking-backend.grants", Box::new(|s| {
            s.clients.get_mut("booking-backend").unwrap().grants = vec![GrantType::named("refresh_token").unwrap()];
        })),
        ("scopes.\"bookings:read\".rate_limit.burst", Box::new(|s| {
            s.scopes.get_mut("bookings:read").unwrap().rate_limit = Some(RateLimitSpec { burst: 0, per: Seconds(60) });
        })),
        ("scopes.\"has space\"", Box::new(|s| {
            s.scopes.insert("has space".into(), ScopeSpec::default());
        })),
    ];
    for (expected, edit) in cases {
        assert_eq!(invalid_field(with_booking(|s| edit(s))), expected);
    }
}

#[test]
fn hash_ignores_formatting_but_not_values() {
    let spec = Spec::parse(BOOKING).unwrap();
    let reformatted = BOOKING.replace("access_ttl = \"15m\"", "access_ttl   =   \"900s\"  # same value");
    assert_eq!(Spec::parse(&reformatted).unwrap().hash(), spec.hash());
    let changed = BOOKING.replace("access_ttl = \"15m\"", "access_ttl = \"16m\"");
    assert_ne!(Spec::parse(&changed).unwrap().hash(), spec.hash());
    assert_eq!(spec.hash().len(), 64);
}

#[test]
fn default_local_spec_is_valid() {
    Spec::default_local("http://127.0.0.1:8080").validate().unwrap();
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the lifetimes, validation accepts a spec exactly when tokens cannot outlive
        /// their key and the JWKS cache cannot miss a new key.
        #[test]
        fn key_lifetime_rules_hold(
            access in 1u64..86_400, leeway in 0u64..300, retire in 1u64..200_000,
            max_age in 0u64..10_000, ahead in 0u64..20_000, rotate in 1u64..400_000,
        ) {
            let result = with_booking(|s| {
                s.tokens.access_ttl = Seconds(access);
                s.tokens.leeway = Seconds(leeway);
                s.keys.retire_after = Seconds(retire);
                s.keys.jwks_max_age = Seconds(max_age);
                s.keys.publish_ahead = Seconds(ahead);
                s.keys.rotate_every = Seconds(rotate);
            });
            let ok = retire >= access + leeway && ahead >= max_age && rotate > ahead;
            prop_assert_eq!(result.is_ok(), ok, "{:?}", result);
        }

        /// Arbitrary text never panics the parser; it is either a spec or an error.
        #[test]
        fn arbitrary_text_never_panics(text in ".{0,400}") {
            let _ = Spec::parse(&text);
        }
    }
}

#[test]
fn signing_algorithms_are_the_access_token_one_then_rs256_for_id_tokens() {
    let mut spec = Spec::parse(BOOKING).unwrap();
    assert_eq!(spec.signing_algorithms(), [SigningAlgorithm::EdDSA], "no client signs users in through a browser");
    spec.tokens.algorithm = SigningAlgorithm::ES256;
    assert_eq!(spec.signing_algorithms(), [SigningAlgorithm::ES256]);
    // The authorization_code grant joins the registry with OpenID Connect; until then only the
    // single-algorithm case can be built.
    let Some(code) = GrantType::named("authorization_code") else { return };
    spec.clients.get_mut("booking-web").unwrap().grants.push(code);
    assert_eq!(spec.signing_algorithms(), [SigningAlgorithm::ES256, SigningAlgorithm::RS256]);
    spec.tokens.algorithm = SigningAlgorithm::RS256;
    assert_eq!(spec.signing_algorithms(), [SigningAlgorithm::RS256], "RS256 access tokens: one chain serves both");
}

#[test]
fn branding_is_checked_and_names_the_field() {
    let branded = format!(
        "{BOOKING}\n[branding]\nproduct_name = \"Stays\"\nlogo_url = \"https://cdn.stays.example/logo.svg\"\naccent_color = \"#0b5d1e\"\n"
    );
    let spec = Spec::parse(&branded).expect("branding parses");
    assert_eq!(spec.branding.product_name.as_deref(), Some("Stays"));
    assert_eq!(spec.branding.accent_text(), DEFAULT_ACCENT_TEXT_COLOR);
    // Unset, it leaves the spec's hash as it was.
    assert!(!toml::to_string(&Spec::parse(BOOKING).unwrap()).unwrap().contains("branding"));

    type Edit = fn(&mut Spec);
    let cases: [(&str, Edit); 6] = [
        ("branding.accent_color", |s| s.branding.accent_color = Some("red".into())),
        ("branding.accent_text_color", |s| s.branding.accent_color = Some("#777777".into())),
        ("branding.logo_url", |s| s.branding.logo_url = Some("http://cdn.example/logo.svg".into())),
        ("branding.logo_url", |s| s.branding.logo_url = Some("javascript:alert(1)".into())),
        ("branding.product_name", |s| s.branding.product_name = Some(" ".into())),
        ("clients.booking-web.branding.accent_text_color", |s| {
            s.clients.get_mut("booking-web").unwrap().branding.accent_text_color = Some("#2b5fbf".into());
        }),
    ];
    for (field, edit) in cases {
        assert_eq!(invalid_field(with_booking(edit)), field);
    }
}

#[test]
fn backchannel_logout_fields_are_checked_and_named() {
    let code_client = |uri: Option<&str>, required: bool| ClientSpec {
        public: true,
        grants: vec![GrantType::named("authorization_code").unwrap()],
        redirect_uris: vec!["https://app.example.com/callback".into()],
        backchannel_logout_uri: uri.map(str::to_owned),
        backchannel_logout_session_required: required,
        ..ClientSpec::default()
    };
    let with_client = |client: ClientSpec| {
        with_booking(|s| {
            s.clients.insert("web-app".into(), client);
        })
    };
    with_client(code_client(Some("https://app.example.com/backchannel-logout"), true)).unwrap();
    with_client(code_client(Some("http://127.0.0.1:8081/logout"), false)).unwrap();
    for bad in ["http://app.example.com/logout", "https://app.example.com/logout#f", "com.example.app:/logout", "logout"] {
        assert_eq!(invalid_field(with_client(code_client(Some(bad), false))), "clients.web-app.backchannel_logout_uri", "{bad}");
    }
    // Only clients of the code flow get browser sessions to be logged out of.
    let field = invalid_field(with_booking(|s| {
        s.clients.get_mut("booking-web").unwrap().backchannel_logout_uri = Some("https://app.example.com/logout".into());
    }));
    assert_eq!(field, "clients.booking-web.backchannel_logout_uri");
    let field = invalid_field(with_booking(|s| s.clients.get_mut("booking-web").unwrap().backchannel_logout_session_required = true));
    assert_eq!(field, "clients.booking-web.backchannel_logout_session_required");
}

#[test]
fn backchannel_logout_fields_at_their_defaults_leave_the_hash_alone() {
    let spec = Spec::parse(BOOKING).unwrap();
    let json = serde_json::to_string(&spec).unwrap();
    assert!(!json.contains("backchannel_logout"), "{json}");
    let text = format!(
        "{BOOKING}\n[clients.web-app]\npublic = true\ngrants = [\"authorization_code\"]\nredirect_uris = [\"https://app.example.com/cb\"]\n\
         backchannel_logout_uri = \"https://app.example.com/logout\"\nbackchannel_logout_session_required = true\n"
    );
    let with_logout = Spec::parse(&text).unwrap();
    let client = &with_logout.clients["web-app"];
    assert_eq!(client.backchannel_logout_uri.as_deref(), Some("https://app.example.com/logout"));
    assert!(client.backchannel_logout_session_required);
}
