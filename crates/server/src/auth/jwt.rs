//! Dashboard tokens: HS256 (pinned), claims `sub`, `jti`, `iat`, `exp`, `scope: "access"`.

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use reconbanker_store::{Timestamp, TokenId, UserId};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: UserId,
    pub jti: TokenId,
    pub iat: i64,
    pub exp: i64,
    pub scope: String,
}

pub const ACCESS_SCOPE: &str = "access";

#[derive(Clone)]
pub struct Jwt {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: std::time::Duration,
}

impl Jwt {
    pub fn new(secret: &[u8], ttl: std::time::Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub", "iat"]);
        validation.leeway = 0;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
        }
    }

    pub fn issue(&self, user: UserId, now: Timestamp) -> Result<(String, Claims), jsonwebtoken::errors::Error> {
        let claims = Claims {
            sub: user,
            jti: TokenId::new(),
            iat: now.timestamp(),
            exp: crate::support::time::after(now, self.ttl).timestamp(),
            scope: ACCESS_SCOPE.into(),
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok((token, claims))
    }

    /// Signature, algorithm, expiry and scope; revocation is checked by the caller.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        let data = decode::<Claims>(token, &self.decoding, &self.validation).ok()?;
        (data.claims.scope == ACCESS_SCOPE).then_some(data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reconbanker_store::now;

    #[test]
    fn issue_verify_and_refusals() {
        let jwt = Jwt::new(
            b"0123456789abcdef0123456789abcdef",
            std::time::Duration::from_secs(3600),
        );
        let user = UserId::new();
        let (token, claims) = jwt.issue(user, now()).expect("issue");
        let back = jwt.verify(&token).expect("verifies");
        assert_eq!(back.sub, user);
        assert_eq!(back.jti, claims.jti);
        assert_eq!(back.exp - back.iat, 3600);
        let other = Jwt::new(
            b"another-secret-another-secret-xx",
            std::time::Duration::from_secs(3600),
        );
        assert!(other.verify(&token).is_none(), "wrong secret");
        let (old, _) = jwt.issue(user, now() - chrono::Duration::hours(2)).expect("issue");
        assert!(jwt.verify(&old).is_none(), "expired");
        // alg=none with the same claims
        let parts: Vec<&str> = token.split('.').collect();
        let none_header = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            br#"{"alg":"none","typ":"JWT"}"#,
        );
        assert!(
            jwt.verify(&format!("{none_header}.{}.", parts[1])).is_none(),
            "alg none refused"
        );
    }
}
