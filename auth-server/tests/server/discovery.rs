//! `GET /.well-known/jwks.json`, (no) `GET /.well-known/openid-configuration` and
//! `GET /.well-known/oauth-authorization-server` (RFC 8414).

use auth_core::clock::{Clock as _, SystemClock};
use auth_core::keys::KeySet;
use auth_core::tokens::AccessTokenVerifier;
use jsonwebtoken::jwk::JwkSet;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Server, TestDb, header, read_json};

on_both_backends!(
    jwks_is_cacheable_and_verifies_issued_tokens,
    discovery_documents_describe_this_server
);

async fn jwks_is_cacheable_and_verifies_issued_tokens(db: TestDb) {
    let server = Server::start(db).await;
    server.sign_up("alice").await;
    let tokens = server.login("alice").await;

    let (status, headers, body) = read_json(server.get("/.well-known/jwks.json").await).await;
    assert_eq!(status, StatusCode::OK);
    // The booking spec's keys.jwks_max_age is 10m.
    assert_eq!(header(&headers, "cache-control"), "public, max-age=600");
    assert!(header(&headers, "content-type").starts_with("application/json"));
    let keys = body["keys"].as_array().expect("a JWK set");
    assert!(!keys.is_empty());
    for key in keys {
        assert_eq!(key["kty"], "OKP", "EdDSA keys: {key}");
        assert_eq!(key["alg"], "EdDSA");
        assert_eq!(key["use"], "sig");
        assert!(key["kid"].is_string());
        assert!(
            key.get("d").is_none(),
            "no private part is ever published: {key}"
        );
    }

    // A resource server's view: only the published JWKS and the spec.
    let jwks: JwkSet = serde_json::from_value(body).expect("a JWK set jsonwebtoken reads");
    let key_set = KeySet::from_jwks(&jwks);
    let verifier = AccessTokenVerifier::from_spec(&server.state.spec);
    let claims = verifier
        .verify(&tokens.access, &key_set, SystemClock.now())
        .expect("verifies against the JWKS");
    assert_eq!(claims.iss, server.base);
    assert_eq!(claims.custom.get("tenant_id"), Some(&json!("t-1")));
    // A tampered token does not.
    let mut tampered = tokens.access.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    assert!(
        verifier
            .verify(&tampered, &key_set, SystemClock.now())
            .is_err()
    );
}

async fn discovery_documents_describe_this_server(db: TestDb) {
    let server = Server::start(db).await;
    let base = server.base.clone();
    let mut documents: Vec<Value> = Vec::new();
    // No OpenID Connect discovery document: there is no OpenID Provider (no ID tokens, no
    // authorization endpoint) for it to describe.
    let (status, _, body) = read_json(server.get("/.well-known/openid-configuration").await).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    for path in ["/.well-known/oauth-authorization-server"] {
        let (status, headers, body) = read_json(server.get(path).await).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(header(&headers, "content-type").starts_with("application/json"));
        assert_eq!(body["issuer"], base.as_str());
        assert_eq!(body["token_endpoint"], format!("{base}/oauth/token"));
        assert_eq!(body["revocation_endpoint"], format!("{base}/oauth/revoke"));
        assert_eq!(
            body["introspection_endpoint"],
            format!("{base}/oauth/introspect")
        );
        assert_eq!(body["userinfo_endpoint"], format!("{base}/userinfo"));
        assert_eq!(body["jwks_uri"], format!("{base}/.well-known/jwks.json"));
        assert_eq!(
            body["grant_types_supported"],
            json!(["client_credentials", "password", "refresh_token"])
        );
        assert_eq!(
            body["scopes_supported"],
            json!(["bookings:read", "bookings:write", "users:admin"])
        );
        let auth_methods = body["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap();
        assert!(
            auth_methods.contains(&json!("client_secret_basic"))
                && auth_methods.contains(&json!("client_secret_post"))
        );
        assert!(
            body["claims_supported"]
                .as_array()
                .unwrap()
                .contains(&json!("tenant_id"))
        );
        documents.push(body);
    }
    // Only what works: no response type without an authorization endpoint, nothing of ID tokens.
    assert_eq!(documents[0]["response_types_supported"], json!([]));
    for member in ["authorization_endpoint", "id_token_signing_alg_values_supported", "subject_types_supported"] {
        assert!(documents[0].get(member).is_none(), "{member} is advertised");
    }
    // Every advertised endpoint answers (with the error of a request lacking everything).
    let doc = &documents[0];
    let jwks = server
        .http
        .get(doc["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(jwks.status(), StatusCode::OK);
    for endpoint in [
        "token_endpoint",
        "revocation_endpoint",
        "introspection_endpoint",
    ] {
        let url = doc[endpoint].as_str().unwrap();
        let response = server
            .http
            .post(url)
            .form(&[("x", "y")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{endpoint}");
    }
    let userinfo = server
        .http
        .get(doc["userinfo_endpoint"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(userinfo.status(), StatusCode::UNAUTHORIZED);
}
