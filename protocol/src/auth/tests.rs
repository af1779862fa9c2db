use super::*;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

const SECRET: &[u8] = b"test-secret-with-enough-bytes-0123456789";
const RS_PRIV: &[u8] = include_bytes!("../../testdata/rs256-private.pem");
const RS_PUB: &[u8] = include_bytes!("../../testdata/rs256-public.pem");
const ES_PRIV: &[u8] = include_bytes!("../../testdata/es256-private.pem");
const ES_PUB: &[u8] = include_bytes!("../../testdata/es256-public.pem");

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims() -> Claims {
    Claims::new("u1", "o1", Role::Organizer, now(), 3600)
}

fn hs() -> Verifier {
    Verifier::new(KeySpec::Hs256(SECRET), &VerifyOptions::default()).unwrap()
}

fn hs_token(raw_claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        raw_claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

#[test]
fn hs256_round_trip() {
    let signer = Signer::new(KeySpec::Hs256(SECRET)).unwrap();
    let mut c = claims();
    c.tier = Some(Tier::Vip);
    c.rooms = Some(vec!["session:S1".into()]);
    let token = signer.sign(&c).unwrap();
    let got = hs().verify(&token).unwrap();
    assert_eq!(got, c);
    assert!(got.grants_room("session:S1"));
    assert!(!got.grants_room("session:S2"));
    assert_eq!(got.tier(), Tier::Vip);
}

#[test]
fn missing_role_is_attendee_and_unknown_role_is_refused() {
    let exp = now() + 60;
    let t = hs_token(&serde_json::json!({"sub":"u1","org":"o1","exp":exp}));
    assert_eq!(hs().verify(&t).unwrap().role, Role::Attendee);
    let t = hs_token(&serde_json::json!({"sub":"u1","org":"o1","exp":exp,"role":"admin"}));
    assert!(matches!(hs().verify(&t), Err(AuthError::Malformed(_))));
}

#[test]
fn required_claims_are_required() {
    let exp = now() + 60;
    for raw in [
        serde_json::json!({"org":"o1","exp":exp}),
        serde_json::json!({"sub":"u1","exp":exp}),
        serde_json::json!({"sub":"u1","org":"o1"}),
        serde_json::json!({"sub":"u 1","org":"o1","exp":exp}),
        serde_json::json!({"sub":"u1","org":"{o1}","exp":exp}),
    ] {
        assert!(
            matches!(hs().verify(&hs_token(&raw)), Err(AuthError::Malformed(_))),
            "{raw}"
        );
    }
}

#[test]
fn expired_and_wrong_key_are_refused() {
    let mut c = claims();
    c.exp = now() - 3600;
    let signer = Signer::new(KeySpec::Hs256(SECRET)).unwrap();
    assert_eq!(
        hs().verify(&signer.sign(&c).unwrap()),
        Err(AuthError::Expired)
    );
    let other = Signer::new(KeySpec::Hs256(b"another-secret-another-secret-xx")).unwrap();
    assert_eq!(
        hs().verify(&other.sign(&claims()).unwrap()),
        Err(AuthError::BadSignature)
    );
    assert!(matches!(
        hs().verify("not-a-jwt"),
        Err(AuthError::Malformed(_))
    ));
}

#[test]
fn alg_none_is_refused() {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_string(&claims()).unwrap());
    for token in [format!("{header}.{body}."), format!("{header}.{body}")] {
        assert!(hs().verify(&token).is_err(), "alg none accepted: {token}");
    }
}

#[test]
fn audience_and_issuer_are_checked_when_configured() {
    let opts = VerifyOptions {
        audience: vec!["evd".into()],
        issuer: vec!["https://id.example".into()],
        leeway_secs: 0,
    };
    let v = Verifier::new(KeySpec::Hs256(SECRET), &opts).unwrap();
    let signer = Signer::new(KeySpec::Hs256(SECRET)).unwrap();
    let mut c = claims();
    c.aud = Some(Audience::One("evd".into()));
    c.iss = Some("https://id.example".into());
    assert!(v.verify(&signer.sign(&c).unwrap()).is_ok());
    c.aud = Some(Audience::Many(vec!["other".into(), "evd".into()]));
    assert!(v.verify(&signer.sign(&c).unwrap()).is_ok());
    c.aud = Some(Audience::One("other".into()));
    assert_eq!(
        v.verify(&signer.sign(&c).unwrap()),
        Err(AuthError::BadAudience)
    );
    c.aud = None;
    assert!(
        v.verify(&signer.sign(&c).unwrap()).is_err(),
        "missing aud must be refused"
    );
    c.aud = Some(Audience::One("evd".into()));
    c.iss = Some("https://evil.example".into());
    assert_eq!(
        v.verify(&signer.sign(&c).unwrap()),
        Err(AuthError::BadIssuer)
    );
}

#[test]
fn rs256_and_es256_keys_work() {
    let opts = VerifyOptions::default();
    let rs = Verifier::new(KeySpec::Rs256Pem(RS_PUB), &opts).unwrap();
    let t = Signer::new(KeySpec::Rs256Pem(RS_PRIV))
        .unwrap()
        .sign(&claims())
        .unwrap();
    assert_eq!(rs.verify(&t).unwrap(), claims_like(&t));
    let es = Verifier::new(KeySpec::Es256Pem(ES_PUB), &opts).unwrap();
    let t = Signer::new(KeySpec::Es256Pem(ES_PRIV))
        .unwrap()
        .sign(&claims())
        .unwrap();
    assert!(es.verify(&t).is_ok());
    // An ES256 token is not accepted by the RS256 verifier, and the other way round.
    assert_eq!(rs.verify(&t), Err(AuthError::BadAlgorithm));
    // An HS256 token is refused by both.
    let hs_t = Signer::new(KeySpec::Hs256(SECRET))
        .unwrap()
        .sign(&claims())
        .unwrap();
    assert_eq!(rs.verify(&hs_t), Err(AuthError::BadAlgorithm));
    assert_eq!(es.verify(&hs_t), Err(AuthError::BadAlgorithm));
}

fn claims_like(token: &str) -> Claims {
    jsonwebtoken::dangerous::insecure_decode::<Claims>(token)
        .unwrap()
        .claims
}

#[test]
fn algorithm_confusion_is_refused() {
    // The classic attack: sign HS256 with the RSA *public* key as the HMAC secret.
    let forged = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(RS_PUB),
    )
    .unwrap();
    let rs = Verifier::new(KeySpec::Rs256Pem(RS_PUB), &VerifyOptions::default()).unwrap();
    assert_eq!(rs.verify(&forged), Err(AuthError::BadAlgorithm));
}

#[test]
fn bad_keys_are_reported() {
    assert!(Verifier::new(KeySpec::Rs256Pem(b"nope"), &VerifyOptions::default()).is_err());
    assert!(Signer::new(KeySpec::Es256Pem(RS_PRIV)).is_err());
}

#[test]
fn settings_build_keys_and_redact_the_secret() {
    let s = JwtSettings {
        secret: Some("x".repeat(40)),
        ..Default::default()
    };
    assert!(
        !format!("{s:?}").contains("xxxx"),
        "Debug must redact the secret"
    );
    let token = s.signer().unwrap().sign(&claims()).unwrap();
    assert_eq!(s.verifier().unwrap().verify(&token).unwrap().sub, "u1");
    assert!(JwtSettings::default().uses_dev_secret());
    assert!(JwtSettings::default().verifier().is_ok());
    let weak = JwtSettings {
        secret: Some("short".into()),
        ..Default::default()
    };
    assert!(matches!(weak.verifier(), Err(JwtConfigError::WeakSecret)));
    let rs = JwtSettings {
        algorithm: JwtAlgorithm::RS256,
        ..Default::default()
    };
    assert!(matches!(rs.verifier(), Err(JwtConfigError::MissingKey(..))));
    let dir = env!("CARGO_MANIFEST_DIR");
    let rs = JwtSettings {
        algorithm: JwtAlgorithm::ES256,
        public_key_path: Some(format!("{dir}/testdata/es256-public.pem").into()),
        private_key_path: Some(format!("{dir}/testdata/es256-private.pem").into()),
        ..Default::default()
    };
    let t = rs.signer().unwrap().sign(&claims()).unwrap();
    assert!(rs.verifier().unwrap().verify(&t).is_ok());
    let parsed: JwtSettings =
        serde_json::from_str(r#"{"audience":"a, b","issuer":["i"]}"#).unwrap();
    assert_eq!(parsed.audience, vec!["a", "b"]);
    assert_eq!(parsed.issuer, vec!["i"]);
}

#[test]
fn minted_tokens_carry_the_configured_audience_and_issuer() {
    let s = JwtSettings {
        secret: Some("m".repeat(40)),
        audience: vec!["evd".into(), "other".into()],
        issuer: vec!["https://issuer.example".into()],
        ..Default::default()
    };
    let token = s.mint(claims()).unwrap();
    let verified = s.verifier().unwrap().verify(&token).unwrap();
    assert_eq!(verified.aud, Some(Audience::One("evd".into())));
    assert_eq!(verified.iss.as_deref(), Some("https://issuer.example"));
    let weak = JwtSettings {
        secret: Some("short".into()),
        ..Default::default()
    };
    assert!(matches!(
        weak.mint(claims()),
        Err(MintError::Config(JwtConfigError::WeakSecret))
    ));
}
