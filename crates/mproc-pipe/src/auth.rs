//! CPython's authkey handshake messages (`deliver_challenge` /
//! `answer_challenge`): pure functions that build and check them. The
//! handshake module runs them over a socket.

use hmac::{Hmac, Mac};

use crate::error::AuthError;

/// The prefix of a challenge.
pub const CHALLENGE: &[u8] = b"#CHALLENGE#";
/// The server's reply to a correct response.
pub const WELCOME: &[u8] = b"#WELCOME#";
/// The server's reply to a wrong response.
pub const FAILURE: &[u8] = b"#FAILURE#";
/// The largest handshake message accepted.
pub const MAX_HANDSHAKE_MESSAGE: usize = 256;
/// Random bytes in a modern (CPython 3.12+) challenge.
const MESSAGE_LENGTH: usize = 40;
/// Random bytes in a legacy (CPython ≤ 3.11) challenge.
const MD5_ONLY_MESSAGE_LENGTH: usize = 20;
const MD5_DIGEST_LEN: usize = 16;
const MAX_DIGEST_NAME: usize = 8;

/// An HMAC digest of the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Digest {
    /// HMAC-MD5: legacy, refused when [`AuthOptions::allow_legacy_md5`] is off.
    Md5,
    /// HMAC-SHA256: CPython 3.12+'s default and ours.
    Sha256,
    /// HMAC-SHA384.
    Sha384,
    /// HMAC-SHA3-256.
    Sha3_256,
    /// HMAC-SHA3-384.
    Sha3_384,
}

impl Digest {
    /// The name CPython uses in the `{name}` prefix.
    pub fn name(self) -> &'static str {
        match self {
            Self::Md5 => "md5",
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha3_256 => "sha3_256",
            Self::Sha3_384 => "sha3_384",
        }
    }

    fn from_name(name: &[u8]) -> Option<Self> {
        Some(match name {
            b"md5" => Self::Md5,
            b"sha256" => Self::Sha256,
            b"sha384" => Self::Sha384,
            b"sha3_256" => Self::Sha3_256,
            b"sha3_384" => Self::Sha3_384,
            _ => return None,
        })
    }

    fn mac(self, key: &[u8], msg: &[u8]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], msg: &[u8]) -> Vec<u8> {
            // HMAC accepts keys of any length, so this cannot fail.
            let mut m = <M as hmac::digest::KeyInit>::new_from_slice(key)
                .unwrap_or_else(|_| unreachable!());
            m.update(msg);
            m.finalize().into_bytes().to_vec()
        }
        match self {
            Self::Md5 => run::<Hmac<md5::Md5>>(key, msg),
            Self::Sha256 => run::<Hmac<sha2::Sha256>>(key, msg),
            Self::Sha384 => run::<Hmac<sha2::Sha384>>(key, msg),
            Self::Sha3_256 => run::<Hmac<sha3::Sha3_256>>(key, msg),
            Self::Sha3_384 => run::<Hmac<sha3::Sha3_384>>(key, msg),
        }
    }

    /// Constant-time check of `tag` against the HMAC of `msg`.
    fn verify(self, key: &[u8], msg: &[u8], tag: &[u8]) -> bool {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], msg: &[u8], tag: &[u8]) -> bool {
            let mut m = <M as hmac::digest::KeyInit>::new_from_slice(key)
                .unwrap_or_else(|_| unreachable!());
            m.update(msg);
            m.verify_slice(tag).is_ok()
        }
        match self {
            Self::Md5 => run::<Hmac<md5::Md5>>(key, msg, tag),
            Self::Sha256 => run::<Hmac<sha2::Sha256>>(key, msg, tag),
            Self::Sha384 => run::<Hmac<sha2::Sha384>>(key, msg, tag),
            Self::Sha3_256 => run::<Hmac<sha3::Sha3_256>>(key, msg, tag),
            Self::Sha3_384 => run::<Hmac<sha3::Sha3_384>>(key, msg, tag),
        }
    }

    fn len(self) -> usize {
        match self {
            Self::Md5 => 16,
            Self::Sha256 | Self::Sha3_256 => 32,
            Self::Sha384 | Self::Sha3_384 => 48,
        }
    }
}

/// Options of the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthOptions {
    /// The digest our challenges ask for (default SHA-256).
    pub digest: Digest,
    /// Accept and answer the legacy HMAC-MD5 protocol of CPython 3.11 and
    /// older: a 16-byte response to our challenge, a 20-byte challenge, and
    /// `{md5}` (default on, as in CPython 3.12+, which accepts `md5` among
    /// its allowed digests). Our own challenges use [`AuthOptions::digest`]
    /// either way. Turn it off to refuse such peers with
    /// [`AuthError::LegacyMd5Disabled`](crate::AuthError::LegacyMd5Disabled).
    pub allow_legacy_md5: bool,
}

impl Default for AuthOptions {
    fn default() -> Self {
        Self {
            digest: Digest::Sha256,
            allow_legacy_md5: true,
        }
    }
}

/// Splits a challenge body or a response into its digest and payload.
/// `None` digest means the legacy unprefixed form.
fn digest_and_payload(message: &[u8]) -> Result<(Option<Digest>, &[u8]), AuthError> {
    if message.len() == MD5_ONLY_MESSAGE_LENGTH || message.len() == MD5_DIGEST_LEN {
        return Ok((None, message));
    }
    if message.first() == Some(&b'{') {
        let end = (MAX_DIGEST_NAME + 2).min(message.len());
        if let Some(close) = message[1..end].iter().position(|&b| b == b'}') {
            let name = &message[1..1 + close];
            return match Digest::from_name(name) {
                Some(d) => Ok((Some(d), &message[close + 2..])),
                None => Err(AuthError::UnsupportedDigest(
                    String::from_utf8_lossy(name).into_owned(),
                )),
            };
        }
    }
    Err(AuthError::Protocol(
        "missing digest prefix or unsupported message length",
    ))
}

/// Builds a new challenge message (`#CHALLENGE#{digest}` + 40 random bytes).
/// Returns the whole message and the part the response's HMAC covers.
///
/// # Errors
/// `Protocol` if the OS random source fails.
pub fn make_challenge(digest: Digest) -> Result<(Vec<u8>, Vec<u8>), AuthError> {
    let mut random = [0u8; MESSAGE_LENGTH];
    crate::sys::random(&mut random).map_err(|_| AuthError::Protocol("no random source"))?;
    let mut body = format!("{{{}}}", digest.name()).into_bytes();
    body.extend_from_slice(&random);
    let mut msg = CHALLENGE.to_vec();
    msg.extend_from_slice(&body);
    Ok((msg, body))
}

/// Computes the response to a challenge message (the client side of
/// `answer_challenge`).
///
/// # Errors
/// `ChallengeExpected` without the `#CHALLENGE#` prefix, `ChallengeTooShort`,
/// `UnsupportedDigest`, and `LegacyMd5Disabled` for an MD5 challenge unless
/// allowed.
pub fn respond_to_challenge(
    authkey: &[u8],
    challenge: &[u8],
    opts: &AuthOptions,
) -> Result<Vec<u8>, AuthError> {
    let body = challenge
        .strip_prefix(CHALLENGE)
        .ok_or(AuthError::ChallengeExpected)?;
    if body.len() < MD5_ONLY_MESSAGE_LENGTH {
        return Err(AuthError::ChallengeTooShort(body.len()));
    }
    let (digest, _) = digest_and_payload(body)?;
    match digest {
        None | Some(Digest::Md5) if !opts.allow_legacy_md5 => Err(AuthError::LegacyMd5Disabled),
        None => Ok(Digest::Md5.mac(authkey, body)),
        Some(d) => {
            let mut out = format!("{{{}}}", d.name()).into_bytes();
            out.extend_from_slice(&d.mac(authkey, body));
            Ok(out)
        }
    }
}

/// Checks a response against the challenge body we sent (the server side
/// of `deliver_challenge`), in constant time.
///
/// # Errors
/// `WrongDigest` when it does not match; `DigestLength`, `UnsupportedDigest`,
/// `AnswerExpected` for a message that is no answer at all, and
/// `LegacyMd5Disabled` for an MD5 response unless allowed.
pub fn verify_response(
    authkey: &[u8],
    body: &[u8],
    response: &[u8],
    opts: &AuthOptions,
) -> Result<(), AuthError> {
    let (digest, mac) = digest_and_payload(response).map_err(|e| match e {
        AuthError::Protocol(_) => AuthError::AnswerExpected,
        e => e,
    })?;
    let digest = digest.unwrap_or(Digest::Md5);
    if digest == Digest::Md5 && !opts.allow_legacy_md5 {
        return Err(AuthError::LegacyMd5Disabled);
    }
    if mac.len() != digest.len() {
        return Err(AuthError::DigestLength {
            expected: digest.len(),
            found: mac.len(),
        });
    }
    if digest.verify(authkey, body, mac) {
        Ok(())
    } else {
        Err(AuthError::WrongDigest)
    }
}

/// Whether `message` is a well-formed challenge: what a listener with an
/// authkey sends first.
pub(crate) fn is_challenge(message: &[u8]) -> bool {
    message.strip_prefix(CHALLENGE).is_some_and(|body| {
        body.len() >= MD5_ONLY_MESSAGE_LENGTH && digest_and_payload(body).is_ok()
    })
}

#[cfg(test)]
mod tests;
