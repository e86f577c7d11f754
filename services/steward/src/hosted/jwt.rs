//! The signup platform's JWTs: they authenticate `/provision` calls. Signature, expiry, audience
//! and issuer are checked; the account is the `sub` claim.

use axum::http::HeaderMap;
use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use syncropel_protocol::ErrorCode;

use crate::error::ApiError;
use crate::StewardError;

/// The key the platform signs with.
pub enum JwtKey {
    /// A shared HS256 secret.
    Hs256(Vec<u8>),
    /// An Ed25519 public key in PEM (the platform signs EdDSA with the private half).
    Ed25519Pem(Vec<u8>),
}

pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

#[derive(serde::Deserialize)]
struct Claims {
    sub: String,
}

impl JwtVerifier {
    pub fn new(key: JwtKey, issuer: &str, audience: &str) -> Result<JwtVerifier, StewardError> {
        let (key, algorithm) = match key {
            JwtKey::Hs256(secret) => {
                if secret.len() < 32 {
                    return Err(StewardError::Invalid(
                        "the platform's HS256 secret must be at least 32 bytes".into(),
                    ));
                }
                (DecodingKey::from_secret(&secret), Algorithm::HS256)
            }
            JwtKey::Ed25519Pem(pem) => (
                DecodingKey::from_ed_pem(&pem).map_err(|e| {
                    StewardError::Invalid(format!("the platform's Ed25519 public key: {e}"))
                })?,
                Algorithm::EdDSA,
            ),
        };
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        // Clocks of the platform and the stewards may differ a little, not by minutes.
        validation.leeway = 30;
        Ok(JwtVerifier { key, validation })
    }

    /// The account a request's `Authorization: Bearer <JWT>` speaks for.
    pub fn account(&self, headers: &HeaderMap) -> Result<String, ApiError> {
        let token = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::new(ErrorCode::AuthRequired, "no platform token presented")
                    .with_hint("send `Authorization: Bearer <JWT signed by the signup platform>`")
            })?;
        let data = decode::<Claims>(token, &self.key, &self.validation).map_err(|e| {
            ApiError::new(
                ErrorCode::AuthInvalid,
                format!("the platform token is not valid: {e}"),
            )
        })?;
        let account = data.claims.sub;
        if account.is_empty() || account.len() > 256 {
            return Err(ApiError::new(
                ErrorCode::AuthInvalid,
                "the platform token's 'sub' must name an account (1-256 characters)",
            ));
        }
        Ok(account)
    }
}
