use super::*;

const ALL: [Digest; 5] = [
    Digest::Md5,
    Digest::Sha256,
    Digest::Sha384,
    Digest::Sha3_256,
    Digest::Sha3_384,
];

#[test]
fn modern_round_trip_for_every_digest() {
    for d in ALL {
        let opts = AuthOptions {
            digest: d,
            allow_legacy_md5: d == Digest::Md5,
        };
        let (msg, body) = make_challenge(d).unwrap();
        assert!(msg.starts_with(b"#CHALLENGE#{"));
        assert_eq!(body.len(), d.name().len() + 2 + MESSAGE_LENGTH);
        let resp = respond_to_challenge(b"key", &msg, &opts).unwrap();
        assert!(resp.starts_with(format!("{{{}}}", d.name()).as_bytes()));
        assert_eq!(resp.len(), d.name().len() + 2 + d.len());
        verify_response(b"key", &body, &resp, &opts).unwrap();
        assert_eq!(
            verify_response(b"other", &body, &resp, &opts),
            Err(AuthError::WrongDigest)
        );
    }
}

#[test]
fn known_sha256_vector() {
    // hmac.new(b"key", b"{sha256}" + bytes(40), "sha256").hexdigest()
    let body: Vec<u8> = [b"{sha256}".as_slice(), &[0u8; 40]].concat();
    let mac = Digest::Sha256.mac(b"key", &body);
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "21156a7f747e08a3a4512da2478039425891e6c6c9b383ce5c9151aff97bfbb8"
    );
    let mut resp = b"{sha256}".to_vec();
    resp.extend_from_slice(&mac);
    verify_response(b"key", &body, &resp, &AuthOptions::default()).unwrap();
}

/// CPython 3.12+ still answers a legacy 20-byte challenge and accepts a
/// legacy 16-byte HMAC-MD5 response; so does mproc by default, while
/// `allow_legacy_md5: false` refuses both.
#[test]
fn legacy_md5_is_accepted_by_default_and_can_be_refused() {
    let strict = AuthOptions {
        allow_legacy_md5: false,
        ..AuthOptions::default()
    };
    assert!(AuthOptions::default().allow_legacy_md5);
    assert_eq!(AuthOptions::default().digest, Digest::Sha256);
    let challenge: Vec<u8> = [CHALLENGE, &[7u8; 20]].concat();
    let resp = respond_to_challenge(b"k", &challenge, &AuthOptions::default()).unwrap();
    // hmac.new(b"k", bytes([7] * 20), "md5").hexdigest()
    let hex: String = resp.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, "6d5cca6646793217129b4439afb17dad");
    assert_eq!(
        respond_to_challenge(b"k", &challenge, &strict),
        Err(AuthError::LegacyMd5Disabled)
    );
    verify_response(b"k", &[7u8; 20], &resp, &AuthOptions::default()).unwrap();
    assert_eq!(
        verify_response(b"k", &[7u8; 20], &resp, &strict),
        Err(AuthError::LegacyMd5Disabled)
    );
    // A 3.11 client answers our modern challenge with raw HMAC-MD5 over the whole body.
    let (_, body) = make_challenge(Digest::Sha256).unwrap();
    let raw = Digest::Md5.mac(b"k", &body);
    verify_response(b"k", &body, &raw, &AuthOptions::default()).unwrap();
    assert_eq!(
        verify_response(b"k", &body, &raw, &strict),
        Err(AuthError::LegacyMd5Disabled)
    );
    // Our own challenges stay {sha256}.
    let (msg, _) = make_challenge(AuthOptions::default().digest).unwrap();
    assert!(msg.starts_with(b"#CHALLENGE#{sha256}"));
}

#[test]
fn malformed_messages_are_errors() {
    let o = AuthOptions::default();
    assert_eq!(
        respond_to_challenge(b"k", b"hello", &o),
        Err(AuthError::ChallengeExpected)
    );
    assert_eq!(
        respond_to_challenge(b"k", b"#CHALLENGE#short", &o),
        Err(AuthError::ChallengeTooShort(5))
    );
    let bad = [CHALLENGE, b"{whirlpool}", &[0u8; 40]].concat();
    assert_eq!(
        respond_to_challenge(b"k", &bad, &o),
        Err(AuthError::Protocol(
            "missing digest prefix or unsupported message length"
        ))
    );
    let bad = [CHALLENGE, b"{sha1}", &[0u8; 40]].concat();
    assert_eq!(
        respond_to_challenge(b"k", &bad, &o),
        Err(AuthError::UnsupportedDigest("sha1".into()))
    );
    let (_, body) = make_challenge(Digest::Sha256).unwrap();
    let short = [b"{sha256}".as_slice(), &[0u8; 31]].concat();
    assert_eq!(
        verify_response(b"k", &body, &short, &o),
        Err(AuthError::DigestLength {
            expected: 32,
            found: 31
        })
    );
    assert_eq!(
        verify_response(b"k", &body, b"", &o),
        Err(AuthError::AnswerExpected)
    );
    assert_eq!(
        verify_response(
            b"k",
            &body,
            b"a plain message from a client without a key",
            &o
        ),
        Err(AuthError::AnswerExpected)
    );
}
